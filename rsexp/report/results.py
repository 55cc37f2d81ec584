"""``rsexp tables``: paper-style tables from tracked runs (any source, see
:mod:`rsexp.report.collect`).

- **Table 1** (classification): Dataset | Method | Top-1 ↑ | Top-5 ↑ | Clip Loss ↓, per
  model a baseline row and its RS rows, mean ± std over seeds with n, each row's change
  against its own baseline (relative % for the scores, absolute for the loss), the best
  of each dataset's block in bold.
- **Table 2** (action segmentation, runs with frame-wise scores): Top-1, Clip Loss, MoF,
  Edit, F1@10, F1@25, F1@50 in the same layout.
- **Ablation** (where the runs hold one: CE only, + spatial, + temporal, + both), as the
  sweep's ``ablation.md``.

A row is one configuration: runs are averaged only when their resolved configs differ in
the seed alone (:mod:`rsexp.report.rows` says how rows are told apart and named).
Metrics are ``test/*`` when every run of a block has them, else ``val/*`` (the caption
says which). Confirmation runs are preferred where a sweep made them, then ``paper``
runs, then plain ``train`` runs (sweep trials never: they trained on fewer epochs). A
row with a missing seed, or a run without a column's metric, is reported by name, never
silently averaged.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from rsexp.report.collect import RunRecord
from rsexp.report.labels import ABLATION, ROW_LABELS
from rsexp.report.rows import Row, ablations, group_rows
from rsexp.report.tables import FORMATS, Line, is_segmentation, write_table

STAGE_PREFERENCE = ("confirm", "paper", "train")
__all__ = ["FORMATS", "provenance_line", "select", "write_tables"]


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


def _primary(rows: list[Row], row: Row) -> bool:
    """The model's baseline row and its RS row of the most seeds: a seed one lacks and
    the other has is a missing run."""
    return row.label in (row.model_label, f"{row.model_label} + RS")


def comparison_lines(rows: list[Row]) -> tuple[list[Line], list[str]]:
    """One dataset's rows as Table 1 lines, and the problems found (missing seeds,
    doubled runs, a baseline of another config)."""
    lines, problems = [], []
    by_label = {r.label: r for r in rows}
    for row in rows:
        problems += [f"{row.label}: {n}" for n in row.notes]
        base = None
        if row.baseline is not None:
            b = row.baseline
            lacking = sorted(set(row.seeds) - set(b.seeds))
            # the change is measured over the seeds the row has (paired runs)
            base = b.on_seeds(row.seeds) if not lacking else b.runs
            if lacking:
                problems.append(f"{b.label}: no run for seed(s) {lacking}")
        partner = by_label.get(f"{row.label} + RS") if row.method == "baseline" else None
        if row.method == "rs" and _primary(rows, row):
            partner = row.baseline if row.baseline and _primary(rows, row.baseline) else None
        if partner is not None:
            missing = sorted(set(partner.seeds) - set(row.seeds))
            if missing:
                problems.append(f"{row.label}: no run for seed(s) {missing}")
        lines.append(Line((row.dataset,), row.label, row.runs, base))
    return lines, problems


def ablation_lines(rows: list[Row]) -> list[Line]:
    """One dataset's component ablations: CE only, + spatial, + temporal, + both over
    the seeds all four share, each against CE only."""
    lines = []
    for ab in ablations(rows):
        ce = ab.runs("ce")
        for c in ABLATION:
            lead = (ab.dataset, ab.model_label)
            lines.append(Line(lead, ROW_LABELS[c], ab.runs(c), None if c == "ce" else ce))
    return lines


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
    """Write ``table1`` (and ``table2`` for runs with frame-wise scores, ``ablation``
    where the runs hold one) in ``formats``.

    Returns:
        (files written, problems found, {table name: Markdown text} for the terminal).
    """
    out.mkdir(parents=True, exist_ok=True)
    rows = group_rows(records)
    tables: dict[str, dict[str, list[Line]]] = {"table1": {}, "table2": {}, "ablation": {}}
    problems: list[str] = []
    for ds, ds_rows in rows.items():
        lines, found = comparison_lines(ds_rows)
        problems += [f"{ds}: {p}" for p in found]
        seg = is_segmentation([r for row in ds_rows for r in row.runs])
        tables["table2" if seg else "table1"][ds] = lines
        abl = ablation_lines(ds_rows)
        if abl:
            tables["ablation"][ds] = abl
    written, shown = [], {}
    for stem, blocks in tables.items():
        if not blocks:
            continue
        runs = {r.run_id: r for lines in blocks.values() for ln in lines for r in ln.runs}
        lead = ["Dataset", "Model"] if stem == "ablation" else ["Dataset"]
        head = "Component ablation (CE only, + spatial, + temporal, + both)" * (stem == "ablation")
        files, found, text = write_table(
            out / stem, blocks, lead, head, provenance_line(source, list(runs.values())), formats
        )
        written += files
        problems += found
        if text:
            shown[stem] = text
    return written, sorted(set(problems)), shown
