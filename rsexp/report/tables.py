"""Paper-style tables (Markdown, LaTeX, CSV) from lines of runs: every table rsexp writes
(``rsexp tables``, the sweep's comparison and ablation, ``rsexp paper``) is rendered
here, so the same runs always print the same cells."""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path

from rsexp.report.collect import RunRecord

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
FORMATS = ("md", "tex", "csv")


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


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

    def csv(self) -> list[str]:
        return [
            f"{self.mean:.6g}" if self.n else "",
            f"{self.std:.6g}" if self.n > 1 else "",
            str(self.n),
            f"{self.delta:.6g}" if self.delta is not None and self.delta == self.delta else "",
        ]


@dataclass
class Line:
    """One table row: its runs (one per seed) and the runs its change is measured
    against (None: no change shown). ``lead``: the cells before the label (dataset, ...).
    """

    lead: tuple[str, ...]
    label: str
    runs: list[RunRecord]
    base: list[RunRecord] | None = None


def split_of(runs: list[RunRecord]) -> str:
    """``test`` when every run has test metrics (the official evaluation split), else
    ``val``; a table's caption says which."""
    return "test" if runs and all("test/top1" in r.metrics for r in runs) else "val"


def is_segmentation(runs: list[RunRecord]) -> bool:
    """Runs with frame-wise scores (action segmentation) get Table 2's columns."""
    return bool(runs) and all(any(k.endswith("/mof") for k in r.metrics) for r in runs)


def _cells(line: Line, split: str, columns) -> tuple[list[Cell], list[str]]:
    cells, problems = [], []
    for metric, _, arrow, _, _ in columns:
        key = f"{split}/{metric}"
        lacking = [r.run_id for r in line.runs if key not in r.metrics]
        if lacking:
            problems.append(f"{line.label}: {', '.join(lacking)} lack {key}")
        values = [r.metrics[key] for r in line.runs if key in r.metrics]
        base = [r.metrics[key] for r in line.base if key in r.metrics] if line.base else None
        cells.append(Cell(values, base, arrow == "↓"))
    return cells, problems


def render(
    blocks: dict[str, list[Line]], lead_header: list[str], fmt: str, caption_head: str
) -> tuple[str, list[str], list[list[str]], list[str]]:
    """One table over ``blocks`` ({block name: lines}; the best of each block is bold)
    in ``fmt`` (md, tex or csv): (caption, header, rows, problems found). The split
    (test, else val) is chosen per block; the columns are Table 2's when every run has
    frame-wise scores, else Table 1's."""
    every = [r for lines in blocks.values() for ln in lines for r in ln.runs]
    segmentation = is_segmentation(every)
    columns = SEGMENTATION_COLUMNS if segmentation else COLUMNS
    latex = fmt == "tex"

    def esc(s: str) -> str:
        return s.replace("_", r"\_") if latex else s

    header = [*lead_header, "Method"]
    for _, name, up, tex_arrow, _ in columns:
        if fmt == "csv":
            header += [f"{name} mean", f"{name} std", f"{name} n", f"{name} change"]
        else:
            header.append(f"{name} {tex_arrow if latex else up}")
    rows, problems, splits = [], [], set()
    for lines in blocks.values():
        split = split_of([r for ln in lines for r in ln.runs])
        splits.add(split)
        table = []
        for ln in lines:
            cells, found = _cells(ln, split, columns)
            problems += [f"{ln.lead[0]}: {p}" if ln.lead else p for p in found]
            table.append((ln, cells))
        best = []
        for j, (_, _, arrow, _, _) in enumerate(columns):
            means = [cells[j].mean for _, cells in table if cells[j].n]
            best.append((min if arrow == "↓" else max)(means) if means else None)
        for ln, cells in table:
            line = [esc(x) for x in (*ln.lead, ln.label)]
            for j, (c, (_, _, _, _, digits)) in enumerate(zip(cells, columns, strict=True)):
                if fmt == "csv":
                    line += c.csv()
                else:
                    bold = len(lines) > 1 and c.n > 0 and c.mean == best[j]
                    line.append(c.text(digits, latex, bold))
            rows.append(line)
    n = sorted({len(ln.runs) for lines in blocks.values() for ln in lines})
    spread = (
        "one seed (n = 1)" if n == [1] else f"mean ± std over n = {'/'.join(map(str, n))} seeds"
    )
    kind = "Table 2 layout (frame-wise over whole videos)" if segmentation else "Table 1 layout"
    caption = (
        f"{kind}: {spread}; rows with a baseline give the relative change of the scores "
        f"and the absolute change of the clip loss against it; best per block in bold. "
        f"Metrics on the {'/'.join(sorted(splits))} split."
    )
    if caption_head:
        caption = f"{caption_head.rstrip('.,; ')}. {caption}"
    return caption, header, rows, problems


def write_table(
    path_stem: Path,
    blocks: dict[str, list[Line]],
    lead_header: list[str],
    caption_head: str = "",
    provenance: str = "",
    formats=FORMATS,
) -> tuple[list[Path], list[str], str]:
    """``<stem>.md|tex|csv``: (files, problems, the Markdown text for the terminal)."""
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    written, problems, shown = [], [], ""
    for fmt in formats:
        caption, header, rows, problems = render(blocks, lead_header, fmt, caption_head)
        path = path_stem.with_name(f"{path_stem.name}.{fmt}")
        if fmt == "csv":
            with path.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(header)
                w.writerows(rows)
                if provenance:
                    w.writerow([f"# {provenance}"])
        elif fmt == "md":
            lines = [f"| {' | '.join(header)} |", "|" + " --- |" * len(header)]
            lines += [f"| {' | '.join(r)} |" for r in rows]
            shown = f"{caption}\n\n" + "\n".join(lines)
            path.write_text(shown + (f"\n\n<!-- {provenance} -->\n" if provenance else "\n"))
        else:
            body = "\n".join(" & ".join(r) + r" \\" for r in rows)
            path.write_text(
                (f"% {provenance}\n" if provenance else "") + "\\begin{table}[t]\n\\centering\n"
                f"\\caption{{{caption.replace('%', chr(92) + '%')}}}\n"
                f"\\begin{{tabular}}{{{'l' * (len(lead_header) + 1)}"
                f"{'c' * (len(header) - len(lead_header) - 1)}}}\n\\toprule\n"
                + " & ".join(header)
                + " \\\\\n\\midrule\n"
                + body
                + "\n\\bottomrule\n\\end{tabular}\n\\end{table}\n"
            )
        written.append(path)
    return written, sorted(set(problems)), shown
