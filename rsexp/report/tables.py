"""Comparison (paper Table 1 layout) and component-ablation tables, Markdown and LaTeX."""

from __future__ import annotations

import statistics
from pathlib import Path

COLUMNS = (
    ("val/top1", "Top-1", "↑", r"$\uparrow$", 2),
    ("val/top5", "Top-5", "↑", r"$\uparrow$", 2),
    ("val/clip_loss", "Clip Loss", "↓", r"$\downarrow$", 3),
)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _cells(runs: list[dict], base: list[dict] | None, latex: bool) -> list[str]:
    """mean ± std per column; against ``base``: relative change (%) for accuracies and the
    absolute change for the clip loss, as in the paper's Table 1."""
    pm = r" $\pm$ " if latex else " ± "
    out = []
    for key, _, _, _, digits in COLUMNS:
        m, s = mean_std([r[key] for r in runs])
        cell = f"{m:.{digits}f}{pm}{s:.{digits}f}"
        if base is not None:
            b, _ = mean_std([r[key] for r in base])
            if key == "val/clip_loss":
                delta = f"{m - b:+.{digits}f}"
            else:
                delta = f"{100 * (m - b) / b:+.2f}%" if b else "n/a"
            if latex:
                delta = delta.replace("%", r"\%")
            cell += f" ({delta})"
        out.append(cell)
    return out


def _write(
    path_stem: Path,
    header: list[str],
    rows: list[list[str]],
    caption: str,
    latex_header: list[str],
    latex_rows: list[list[str]],
) -> list[Path]:
    md = path_stem.with_suffix(".md")
    lines = [f"| {' | '.join(header)} |", "|" + " --- |" * len(header)]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    md.write_text(f"{caption}\n\n" + "\n".join(lines) + "\n")
    tex = path_stem.with_suffix(".tex")
    body = "\n".join(" & ".join(r) + r" \\" for r in latex_rows)
    tex.write_text(
        "\\begin{table}[t]\n\\centering\n"
        f"\\caption{{{caption}}}\n"
        f"\\begin{{tabular}}{{l{'c' * (len(latex_header) - 1)}}}\n\\toprule\n"
        + " & ".join(latex_header)
        + r" \\"
        + "\n\\midrule\n"
        + body
        + "\n\\bottomrule\n\\end{tabular}\n\\end{table}\n"
    )
    return [md, tex]


def _table(
    reports: Path, stem: str, caption: str, groups: dict[str, list[dict]], baseline: str | None
) -> list[Path]:
    header = ["Method"] + [f"{name} {arrow}" for _, name, arrow, _, _ in COLUMNS]
    latex_header = ["Method"] + [f"{name} {arrow}" for _, name, _, arrow, _ in COLUMNS]
    rows, latex_rows = [], []
    base = groups[baseline] if baseline else None
    for label, runs in groups.items():
        ref = base if base is not None and label != baseline else None
        rows.append([label, *_cells(runs, ref, False)])
        latex_rows.append([label.replace("_", r"\_"), *_cells(runs, ref, True)])
    return _write(reports / stem, header, rows, caption, latex_header, latex_rows)


def write_comparison(reports: Path, dataset: str, groups: dict[str, list[dict]]) -> list[Path]:
    """``groups``: {"TSViT": [summaries], "TSViT + RS": [summaries]} (baseline first)."""
    seeds = len(next(iter(groups.values())))
    caption = (
        f"{dataset}: mean ± std over {seeds} seeds; +RS rows give the relative change "
        f"of Top-1/Top-5 and the absolute change of the clip loss."
    )
    return _table(reports, "comparison", caption, groups, next(iter(groups)))


def write_ablation(reports: Path, dataset: str, groups: dict[str, list[dict]]) -> list[Path]:
    caption = f"{dataset}: component ablation (CE only, + spatial, + temporal, + both)."
    return _table(reports, "ablation", caption, groups, next(iter(groups)))
