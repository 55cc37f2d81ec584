"""Configs -> runs -> tables: the one skeleton of a sweep's confirmation stage and of
``rsexp paper``.

Each run is a typed :class:`~rsexp.config.Config` with its folder; the folder gets the
config as ``config.yaml`` before its job starts, and the job (a spawned process,
:mod:`rsexp.jobs`) trains or resumes what the folder holds. Runs whose configs are equal
are trained once and shared between rows. Runs are idempotent: a finished one is read
back, an interrupted one resumed, so the same command continues a grid. The tables are
rendered from the run folders as ``rsexp tables`` reads them (the same records, the same
cells).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from rsexp.config import Config, to_dict
from rsexp.errors import Interrupted, JobFailed
from rsexp.jobs import Spec, run_all
from rsexp.report.collect import collect
from rsexp.report.results import provenance_line
from rsexp.report.rows import identity
from rsexp.report.tables import Line, write_table


@dataclass
class GridRun:
    cfg: Config  # resolved: its seed, its tags
    run_dir: Path


@dataclass
class GridRow:
    """A table row: its runs (one per seed), the row its change is measured against."""

    label: str
    runs: list[GridRun]
    base: str | None = None
    lead: tuple[str, ...] = ()


@dataclass
class Table:
    stem: str  # the file name: <stem>.md, .tex, .csv
    rows: list[GridRow]
    lead_header: list[str] = field(default_factory=lambda: ["Dataset"])
    caption: str = ""


def run_job(run_dir: str) -> None:
    """A grid job (in its own spawned process): the run its folder holds, trained,
    resumed or read back. Quiet: the parent shows progress."""
    import io

    from rsexp.experiment import RunDir, run_or_resume

    rd = RunDir(run_dir)
    run_or_resume(rd.config(), rd.path, console=Console(file=io.StringIO()))


def _identity(cfg: Config) -> dict[str, str]:
    """What decides a run's numbers, as the tables tell rows apart (tags, folders and
    thread counts aside): two rows whose runs agree in it share one run."""
    from rsexp.config import flatten
    from rsexp.report.collect import param_value

    return identity({k: param_value(v) for k, v in flatten(to_dict(cfg)).items()})


def _prepare_folder(run: GridRun) -> None:
    """``config.yaml`` for a new run; a folder holding a run of another config is an
    error (its results would be read back as this row's)."""
    from rsexp.experiment import RunDir

    rd = RunDir(run.run_dir)
    if rd.config_path.is_file() and (rd.has_checkpoint() or rd.summary()):
        a, b = _identity(rd.config()), _identity(run.cfg)
        diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        if diff:
            raise JobFailed(
                f"{rd.path} holds a run of another config (it differs in "
                f"{', '.join(diff[:5])}); move it aside, or use another study or folder"
            )
        return
    rd.save_config(run.cfg)


def finished(run_dir: Path):
    """A job's result check: its run folder's summary says finished (-> the summary),
    else its error."""
    from rsexp.experiment import RunDir

    def check(code: int) -> tuple[bool, object]:
        summary = RunDir(run_dir).summary() or {}
        if code == 0 and summary.get("status") == "finished":
            return True, summary
        return False, summary.get("error")

    return check


def run_grid(
    tables: list[Table],
    reports: Path,
    workers: int,
    slots: list[dict[str, str]],
    console: Console,
    title: str,
    source: str,
    first=None,
    runner=None,
) -> tuple[list[Path], dict[str, str]]:
    """Train every run of ``tables`` (``workers`` at a time, each slot its environment:
    its GPU; ``first(run)`` orders them, lowest first; or ``runner(specs, on_done)``
    runs them, e.g. as Slurm jobs), then write each table under ``reports``. Returns
    (files written, {table stem: Markdown text})."""
    runs: dict[Path, GridRun] = {}
    shared: dict[str, Path] = {}  # one run per distinct config (its seed included)
    for table in tables:
        for row in table.rows:
            for i, run in enumerate(row.runs):
                key = repr(sorted(_identity(run.cfg).items())) + f"seed={run.cfg.train.seed}"
                if key in shared:  # the same config in another row: its run, shared
                    row.runs[i] = runs[shared[key]]
                    continue
                shared[key] = run.run_dir
                runs[run.run_dir] = run
    for run in runs.values():
        _prepare_folder(run)

    specs = {
        d: Spec("rsexp.grid.grid:run_job", (str(d),), finished(d), label=str(d)) for d in runs
    }
    with Progress(console=console) as progress:
        task = progress.add_task(title, total=len(specs))

        def on_done(run_dir: Path, summary: dict) -> None:
            shown = ", ".join(f"{k} {summary[k]:.2f}" for k in ("test/top1", "val/top1")
                              if k in summary)  # fmt: skip
            progress.console.print(f"{run_dir.name:<24} {shown}")
            progress.advance(task)

        try:
            if runner is not None:
                runner(specs, on_done)
            else:
                run_all(specs, slots[: max(1, workers)], on_done)
        except KeyboardInterrupt:
            console.print(
                "[yellow]interrupted[/]: the runs in progress are checkpointed; the same "
                "command continues them"
            )
            raise Interrupted(f"{title} interrupted") from None
    roots = {d.parent for d in runs}
    records = {Path(r.ref).resolve(): r for root in roots for r in collect(str(root)) if r.ref}
    prov = provenance_line(source, [records[d.resolve()] for d in runs])
    written, shown = [], {}
    for table in tables:
        lines = {}
        for row in table.rows:
            recs = [records[run.run_dir.resolve()] for run in row.runs]
            lines[row.label] = (row, recs)
        block = [
            Line(row.lead, row.label, recs, lines[row.base][1] if row.base else None)
            for row, recs in lines.values()
        ]
        files, _, text = write_table(
            reports / table.stem, {"": block}, table.lead_header, table.caption, prov
        )
        written += files
        shown[table.stem] = text
    return written, shown
