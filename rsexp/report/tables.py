"""Comparison (paper Table 1 layout) and component-ablation tables, Markdown and LaTeX."""

from __future__ import annotations

import statistics
from pathlib import Path

COLUMNS = (
    ("top1", "Top-1", "↑", r"$\uparrow$", 2),
    ("top5", "Top-5", "↑", r"$\uparrow$", 2),
    ("clip_loss", "Clip Loss", "↓", r"$\downarrow$", 3),
)


def split_of(groups: dict[str, list[dict]]) -> str:
    """``test`` when every run has test metrics (the official evaluation split), else
    ``val``; tables say which in their caption."""
    runs = [r for rs in groups.values() for r in rs]
    return "test" if runs and all("test/top1" in r for r in runs) else "val"


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _cells(runs: list[dict], base: list[dict] | None, latex: bool, split: str) -> list[str]:
    """mean ± std per column; against ``base``: relative change (%) for accuracies and the
    absolute change for the clip loss, as in the paper's Table 1."""
    pm = r" $\pm$ " if latex else " ± "
    out = []
    for metric, _, _, _, digits in COLUMNS:
        key = f"{split}/{metric}"
        m, s = mean_std([r[key] for r in runs])
        # one seed has no spread to show: the value alone, never "± 0.00"
        cell = f"{m:.{digits}f}{pm}{s:.{digits}f}" if len(runs) > 1 else f"{m:.{digits}f}"
        if base is not None:
            b, _ = mean_std([r[key] for r in base])
            if metric == "clip_loss":
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
    reports: Path, stem: str, caption: str, groups: dict[str, list[dict]], baseline_of
) -> list[Path]:
    """``baseline_of(label)``: the row that ``label``'s change is measured against, or
    None for a row without one."""
    header = ["Method"] + [f"{name} {arrow}" for _, name, arrow, _, _ in COLUMNS]
    latex_header = ["Method"] + [f"{name} {arrow}" for _, name, _, arrow, _ in COLUMNS]
    rows, latex_rows = [], []
    split = split_of(groups)
    caption = f"{caption} Metrics on the {split} split."
    for label, runs in groups.items():
        b = baseline_of(label)
        ref = groups[b] if b is not None and b != label else None
        rows.append([label, *_cells(runs, ref, False, split)])
        latex_rows.append([label.replace("_", r"\_"), *_cells(runs, ref, True, split)])
    return _write(reports / stem, header, rows, caption, latex_header, latex_rows)


def write_comparison(
    reports: Path, dataset: str, groups: dict[str, list[dict]], stem: str = "comparison"
) -> list[Path]:
    """Paper Table 1 layout. ``groups``: {"TSViT": [summaries], "TSViT + RS": [...],
    "ViViT": [...], ...}; each "<model> + RS" row is compared with its own "<model>"."""
    seeds = len(next(iter(groups.values())))
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed (n = 1)"
    caption = (
        f"{dataset}: {spread}; +RS rows give the relative change of Top-1/Top-5 and the "
        f"absolute change of the clip loss against their own baseline."
    )

    def baseline_of(label: str) -> str | None:
        base = label.removesuffix(" + RS")
        return base if base != label and base in groups else None

    return _table(reports, stem, caption, groups, baseline_of)


def write_ablation(reports: Path, dataset: str, groups: dict[str, list[dict]]) -> list[Path]:
    caption = f"{dataset}: component ablation (CE only, + spatial, + temporal, + both)."
    first = next(iter(groups))
    return _table(reports, "ablation", caption, groups, lambda label: first)
