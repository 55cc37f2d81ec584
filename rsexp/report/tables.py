"""Comparison (paper Table 1 layout) and component-ablation tables, Markdown and LaTeX."""

from __future__ import annotations

import statistics
from pathlib import Path

UP, DOWN = ("↑", r"$\uparrow$"), ("↓", r"$\downarrow$")
COLUMNS = (
    ("top1", "Top-1", *UP, 2),
    ("top5", "Top-5", *UP, 2),
    ("clip_loss", "Clip Loss", *DOWN, 3),
)
# paper Table 2 (action segmentation: Desktop Assembly), for runs that carry its metrics
SEGMENTATION_COLUMNS = (
    ("top1", "Top-1", *UP, 2),
    ("clip_loss", "Clip Loss", *DOWN, 3),
    ("mof", "MoF", *UP, 2),
    ("edit", "Edit", *UP, 2),
    ("f1@10", "F1@10", *UP, 2),
    ("f1@25", "F1@25", *UP, 2),
    ("f1@50", "F1@50", *UP, 2),
)


def split_of(groups: dict[str, list[dict]]) -> str:
    """``test`` when every run has test metrics (the official evaluation split), else
    ``val``; tables say which in their caption."""
    runs = [r for rs in groups.values() for r in rs]
    return "test" if runs and all("test/top1" in r for r in runs) else "val"


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def columns_of(groups: dict[str, list[dict]], split: str) -> tuple:
    """Table 2's columns when every run has the segmentation scores, else Table 1's."""
    runs = [r for rs in groups.values() for r in rs]
    seg = runs and all(f"{split}/mof" in r for r in runs)
    return SEGMENTATION_COLUMNS if seg else COLUMNS


class Cell:
    """One table cell: mean, std, n and the change against the row's baseline."""

    def __init__(self, values: list[float], base: list[float] | None, lower_better: bool):
        self.n = len(values)
        self.mean, self.std = mean_std(values) if values else (float("nan"), 0.0)
        self.delta = None
        if base and values:
            b = mean_std(base)[0]
            if lower_better:
                self.delta = self.mean - b
            else:  # relative; a zero baseline has none ("n/a")
                self.delta = 100 * (self.mean - b) / b if b else float("nan")
        self.lower_better = lower_better

    def text(self, digits: int, latex: bool, bold: bool) -> str:
        if not self.n:
            return "—"
        pm = r" $\pm$ " if latex else " ± "
        s = f"{self.mean:.{digits}f}" + (f"{pm}{self.std:.{digits}f}" if self.n > 1 else "")
        if bold:
            s = rf"\textbf{{{s}}}" if latex else f"**{s}**"
        if self.delta is not None:
            pct = r"\%" if latex else "%"
            d = f"{self.delta:+.{digits}f}" if self.lower_better else f"{self.delta:+.2f}{pct}"
            s += f" ({'n/a' if self.delta != self.delta else d})"
        return s


def _cells(
    runs: list[dict], base: list[dict] | None, latex: bool, split: str, columns=COLUMNS
) -> list[str]:
    """mean ± std per column; against ``base``: relative change (%) for accuracies and the
    absolute change for the clip loss, as in the paper's Table 1."""
    out = []
    for metric, _, arrow, _, digits in columns:
        key = f"{split}/{metric}"
        ref = [r[key] for r in base] if base is not None else None
        out.append(Cell([r[key] for r in runs], ref, arrow == "↓").text(digits, latex, False))
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
    split = split_of(groups)
    columns = columns_of(groups, split)
    header = ["Method"] + [f"{name} {arrow}" for _, name, arrow, _, _ in columns]
    latex_header = ["Method"] + [f"{name} {arrow}" for _, name, _, arrow, _ in columns]
    rows, latex_rows = [], []
    layout = "Table 2 layout (frame-wise over whole videos)" if columns is not COLUMNS else ""
    caption = f"{caption} Metrics on the {split} split{'; ' + layout if layout else ''}."
    for label, runs in groups.items():
        b = baseline_of(label)
        ref = groups[b] if b is not None and b != label else None
        rows.append([label, *_cells(runs, ref, False, split, columns)])
        latex_rows.append([label.replace("_", r"\_"), *_cells(runs, ref, True, split, columns)])
    return _write(reports / stem, header, rows, caption, latex_header, latex_rows)


def write_comparison(
    reports: Path, dataset: str, groups: dict[str, list[dict]], stem: str = "comparison"
) -> list[Path]:
    """Paper Table 1 layout. ``groups``: {"TSViT": [summaries], "TSViT + RS": [...],
    "ViViT": [...], ...}; each "<model> + RS" row is compared with its own "<model>"."""
    seeds = len(next(iter(groups.values())))
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed (n = 1)"
    caption = (
        f"{dataset}: {spread}; +RS rows give the relative change of the scores and the "
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
