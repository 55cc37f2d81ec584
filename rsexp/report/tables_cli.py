"""``rsexp tables`` and ``rsexp figures``: collect the runs, write the tables (naming what
is missing) or the figures, say what was written where."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from rsexp.report.collect import SourceError, collect
from rsexp.report.results import FORMATS, provenance_line, select, write_tables


def _out(args, name: str) -> Path:
    if args.out:
        return Path(args.out)
    return Path(args.source) / name if Path(args.source).is_dir() else Path("runs") / name


def _study(args):
    import optuna

    if not args.storage:
        raise SourceError("--study needs --storage (the study's storage URL)")
    import sqlalchemy.exc

    from rsexp.report.studies import damaged, storage_url

    try:
        return optuna.load_study(study_name=args.study, storage=storage_url(args.storage))
    except KeyError:
        raise SourceError(f"--study {args.study}: not in {args.storage}") from None
    except sqlalchemy.exc.DatabaseError as e:
        if isinstance(e, sqlalchemy.exc.OperationalError):
            raise SourceError(f"--storage {args.storage}: cannot connect: {e.orig}") from None
        raise damaged(args.storage, e) from None


def _warner(console: Console):
    return lambda message: console.print(f"[yellow]left out[/]: {escape(message)}")


def figures(args, console: Console, err: Console | None = None) -> int:
    from rsexp.report.figures import fig5, study_plots

    warn = _warner(err or console)
    records = select(collect(args.source, warn), args.dataset, args.stage)
    out = _out(args, "figures")
    if not records and not args.study:
        raise SourceError(f"--source {args.source}: no finished run")
    written = fig5(records, out, warn) if records else []
    if args.study:
        written += study_plots(_study(args), out / args.study)
    console.print(
        f"[green]figures[/]: {len(records)} runs | wrote " + ", ".join(map(str, written))
    )
    return 0


def tables(args, console: Console, err: Console) -> int:
    records = select(collect(args.source, _warner(err)), args.dataset, args.stage)
    out = _out(args, "tables")
    formats = FORMATS if args.format == "all" else (args.format,)
    written: list[Path] = []
    if records:
        files, problems, shown = write_tables(records, out, args.source, formats)
        written += files
        for text in shown.values():
            console.print(text, markup=False)
        for p in problems:
            err.print(f"[yellow]incomplete[/]: {escape(p)}")
    elif not args.study:
        raise SourceError(
            f"--source {args.source}: no finished run"
            + (f" of dataset {args.dataset}" if args.dataset else "")
            + (f" at stage {args.stage}" if args.stage else "")
        )
    if args.study:
        from rsexp.report.study import write_study_tables

        study = _study(args)
        prov = provenance_line(f"{args.storage} study {args.study}", [])
        files, text = write_study_tables(study, out, provenance=prov)
        written += files
        console.print(text, markup=False)
    console.print(f"[green]tables[/]: {len(records)} runs | wrote " + ", ".join(map(str, written)))
    return 0
