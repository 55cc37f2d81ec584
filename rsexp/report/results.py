"""``rsexp tables``: paper-style tables from tracked runs (any source, see
:mod:`rsexp.report.collect`).

- **Table 1** (classification): Dataset | Method | Top-1 ↑ | Top-5 ↑ | Clip Loss ↓, a
  baseline row and a "+ RS" row per model, mean ± std over seeds with n, each + RS row's
  change against its own baseline (relative % for the scores, absolute for the loss),
  the best of each dataset's block in bold.
- **Table 2** (action segmentation, runs with frame-wise scores): Top-1, Clip Loss, MoF,
  Edit, F1@10, F1@25, F1@50 in the same layout.

Metrics are ``test/*`` when every run of a block has them, else ``val/*`` (the caption
says which). Confirmation runs are preferred where a sweep made them, then ``paper``
runs, then plain ``train`` runs (sweep trials never: they trained on fewer epochs). A
group with a missing seed, or a run without a column's metric, is reported by name,
never silently averaged.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from rsexp.report.collect import RunRecord
from rsexp.report.labels import model_name
from rsexp.report.tables import COLUMNS, SEGMENTATION_COLUMNS, Cell

STAGE_PREFERENCE = ("confirm", "paper", "train")
FORMATS = ("md", "tex", "csv")


def select(records: list[RunRecord], dataset: str | None, stage: str | None) -> list[RunRecord]:
    """The runs a table shows: of ``dataset`` (all without), of ``stage`` (without: per
    dataset the first of confirm, paper, train that has runs)."""
    records = [r for r in records if dataset is None or r.dataset == dataset]
    if stage is not None:
        return [r for r in records if r.stage == stage]
    out = []
    for ds in sorted({r.dataset for r in records}):
        mine = [r for r in records if r.dataset == ds]
        for st in STAGE_PREFERENCE:
            chosen = [r for r in mine if r.stage == st]
            if chosen:
                out += chosen
                break
    return out


def row_label(model: str, method: str) -> str:
    base = model_name(model.rstrip("*")) + ("*" if model.endswith("*") else "")
    return base if method == "baseline" else f"{base} + RS"


def blocks(records: list[RunRecord]) -> dict[str, dict[str, list[RunRecord]]]:
    """{dataset: {row label: runs}}; rows per model, baseline before + RS."""
    out: dict[str, dict[str, list[RunRecord]]] = defaultdict(dict)
    order = sorted(records, key=lambda r: (r.dataset, r.model, r.method != "baseline", r.seed))
    for r in order:
        out[r.dataset].setdefault(row_label(r.model, r.method), []).append(r)
    return dict(out)


def table_rows(block: dict[str, list[RunRecord]], split: str, columns) -> tuple[dict, list]:
    """{label: [Cell per column]} and the problems found (missing seeds or metrics)."""
    problems = []
    for label, runs in block.items():  # a row and its partner (baseline <-> + RS)
        partner = label.removesuffix(" + RS") if label.endswith(" + RS") else f"{label} + RS"
        missing = sorted({r.seed for r in block.get(partner, [])} - {r.seed for r in runs})
        if missing:
            problems.append(f"{label}: no run for seed(s) {missing}")
    cells = {}
    for label, runs in block.items():
        base_label = label.removesuffix(" + RS")
        base = block.get(base_label) if base_label != label else None
        row = []
        for metric, _, arrow, _, _ in columns:
            key = f"{split}/{metric}"
            lacking = [r.run_id for r in runs if key not in r.metrics]
            if lacking:
                problems.append(f"{label}: {', '.join(lacking)} lack {key}")
            values = [r.metrics[key] for r in runs if key in r.metrics]
            ref = [r.metrics[key] for r in base if key in r.metrics] if base else None
            row.append(Cell(values, ref, arrow == "↓"))
        cells[label] = row
    return cells, problems


def _best(cells: dict, j: int) -> float | None:
    means = [row[j].mean for row in cells.values() if row[j].n]
    if not means:
        return None
    first = next(iter(cells.values()))[j]
    return min(means) if first.lower_better else max(means)


def render(
    recs: dict[str, dict[str, list[RunRecord]]], segmentation: bool, fmt: str
) -> tuple[str, list[str], list[list[str]], list[str]]:
    """One table (Table 1, or Table 2 with ``segmentation``) as (caption, header, rows)
    in ``fmt`` (md, tex or csv), plus the problems found."""
    columns = SEGMENTATION_COLUMNS if segmentation else COLUMNS
    latex = fmt == "tex"
    header = ["Dataset", "Method"]
    for _, name, up, tex_arrow, _ in columns:
        if fmt == "csv":
            header += [f"{name} mean", f"{name} std", f"{name} n", f"{name} change"]
        else:
            header.append(f"{name} {tex_arrow if latex else up}")
    rows, problems, splits = [], [], set()
    for ds, block in recs.items():
        every = [r for runs in block.values() for r in runs]
        split = "test" if all("test/top1" in r.metrics for r in every) else "val"
        splits.add(split)
        cells, found = table_rows(block, split, columns)
        problems += [f"{ds}: {p}" for p in found]
        bests = [_best(cells, j) for j in range(len(columns))]
        for label, row in cells.items():
            name = label.replace("_", r"\_") if latex else label
            line = [ds.replace("_", r"\_") if latex else ds, name]
            for j, (c, (_, _, _, _, digits)) in enumerate(zip(row, columns, strict=True)):
                if fmt == "csv":
                    line += [
                        f"{c.mean:.6g}" if c.n else "",
                        f"{c.std:.6g}" if c.n > 1 else "",
                        str(c.n),
                        f"{c.delta:.6g}" if c.delta is not None and c.delta == c.delta else "",
                    ]
                else:
                    bold = c.n > 0 and bests[j] is not None and c.mean == bests[j]
                    line.append(c.text(digits, latex, bold))
            rows.append(line)
    n = sorted({len(runs) for block in recs.values() for runs in block.values()})
    spread = (
        "one seed (n = 1)" if n == [1] else f"mean ± std over n = {'/'.join(map(str, n))} seeds"
    )
    kind = "Table 2 layout (frame-wise over whole videos)" if segmentation else "Table 1 layout"
    caption = (
        f"{kind}: {spread}; + RS rows give the relative change of the scores and the "
        f"absolute change of the clip loss against their own baseline; best per dataset "
        f"in bold. Metrics on the {'/'.join(sorted(splits))} split."
    )
    return caption, header, rows, problems


def provenance_line(source: str, records: list[RunRecord]) -> str:
    from rsexp.track.provenance import git_state

    commit, dirty = git_state(Path(__file__).resolve().parents[2])
    ids = ", ".join(sorted(r.run_id for r in records))
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"source: {source}; commit {commit}{' (uncommitted changes)' if dirty else ''}; "
        f"{date}; runs: {ids}"
    )


def write_tables(
    records: list[RunRecord], out: Path, source: str, formats=FORMATS
) -> tuple[list[Path], list[str], dict[str, str]]:
    """Write ``table1`` (and ``table2`` when runs have frame-wise scores) in ``formats``.

    Returns:
        (files written, problems found, {table name: Markdown text} for the terminal).
    """
    out.mkdir(parents=True, exist_ok=True)
    all_blocks = blocks(records)
    seg = {
        ds
        for ds, b in all_blocks.items()
        if all(any(k.endswith("/mof") for k in r.metrics) for rs in b.values() for r in rs)
    }
    written, problems, shown = [], [], {}
    for stem, keep in (("table1", lambda ds: ds not in seg), ("table2", lambda ds: ds in seg)):
        chosen = {ds: b for ds, b in all_blocks.items() if keep(ds)}
        if not chosen:
            continue
        runs = [r for b in chosen.values() for rs in b.values() for r in rs]
        prov = provenance_line(source, runs)
        for fmt in formats:
            caption, header, rows, found = render(chosen, stem == "table2", fmt)
            path = out / f"{stem}.{fmt}"
            if fmt == "csv":
                with path.open("w", newline="") as f:
                    w = csv.writer(f)
                    w.writerow(header)
                    w.writerows(rows)
                    w.writerow([f"# {prov}"])
            elif fmt == "md":
                lines = [f"| {' | '.join(header)} |", "|" + " --- |" * len(header)]
                lines += [f"| {' | '.join(r)} |" for r in rows]
                text = f"{caption}\n\n" + "\n".join(lines) + f"\n\n<!-- {prov} -->\n"
                path.write_text(text)
                shown[stem] = f"{caption}\n\n" + "\n".join(lines)
            else:
                body = "\n".join(" & ".join(r) + r" \\" for r in rows)
                path.write_text(
                    "% " + prov + "\n\\begin{table}[t]\n\\centering\n"
                    f"\\caption{{{caption.replace('%', chr(92) + '%')}}}\n"
                    f"\\begin{{tabular}}{{ll{'c' * (len(header) - 2)}}}\n\\toprule\n"
                    + " & ".join(header)
                    + " \\\\\n\\midrule\n"
                    + body
                    + "\n\\bottomrule\n\\end{tabular}\n\\end{table}\n"
                )
            written.append(path)
        problems += found
    return written, sorted(set(problems)), shown
