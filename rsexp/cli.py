"""``rsexp`` command line: train, resume, sweep, paper, prepare, guidance, tables, models,
config."""

from __future__ import annotations

import argparse
import os
import sys

from rich.console import Console
from rich.markup import escape

from rsexp.config import load_config
from rsexp.errors import (
    USER_ERRORS,
    Interrupted,
    JobFailed,
    NonFiniteLossError,
    SweepStopped,
)

# Commands import what they run when they run it: ``rsexp --help`` and ``rsexp config``
# never import torch, timm or a tracker (benchmarks/cli_start.py measures it).


NPROC_HELP = (
    "train this one run on N processes of this machine (DistributedDataParallel, one GPU "
    "each; gloo on CPU); several machines: run torchrun ... -m rsexp.cli train yourself"
)


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rsexp", description="Reasoning Supervision experiments")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train and evaluate one run")
    t.add_argument("--config", "-c", default=None, help="YAML config (e.g. sweeps/synthetic.yaml)")
    t.add_argument("--run-dir", default=None, help="run folder (default runs/<experiment>/<id>)")
    t.add_argument(
        "--until-epoch",
        type=int,
        default=None,
        help="stop (checkpointed) after this epoch; continue with rsexp resume",
    )
    t.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. loss.tau=0.5")
    t.add_argument("--nproc", type=int, default=1, help=NPROC_HELP)

    r = sub.add_parser("resume", help="continue a run from its last checkpoint")
    r.add_argument("run", help="run folder or run id")
    r.add_argument(
        "--runs-dir",
        default=None,
        help="where to look for a run id (default: train.runs_dir of --config, or runs)",
    )
    r.add_argument(
        "--config", "-c", default=None, help="config whose train.runs_dir holds the run id"
    )
    r.add_argument(
        "overrides",
        nargs="*",
        help="only where the run's files, data and trackers live (train.runs_dir, data.root, "
        "track.mlflow.tracking_uri, ...; train.epochs=N as --epochs N); any other is refused",
    )
    r.add_argument("--until-epoch", type=int, default=None)
    r.add_argument("--epochs", type=int, default=None, help="extend the run to this many epochs")
    r.add_argument(
        "--accept-changed-inputs",
        action="store_true",
        help="continue although the guidance file, dataset index or clip cache changed "
        "since the run started (recorded as a param of the run)",
    )
    r.add_argument("--nproc", type=int, default=1, help=NPROC_HELP)

    sw = sub.add_parser("sweep", help="Optuna sweep, then confirmation runs and tables")
    sw.add_argument("--config", "-c", default=None, help="sweeps/<dataset>.yaml")
    sw.add_argument("--trials", type=int, default=None, help="total trial budget")
    sw.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    sw.add_argument("--storage", default=None, help="Optuna RDB URL (default SQLite in runs/)")
    sw.add_argument("--study", default=None, help="study name (default <dataset>-<model>)")
    sw.add_argument(
        "--reports",
        default=None,
        help="folder for the tables (default runs/<experiment>/sweep-<study>/reports)",
    )
    sw.add_argument(
        "--trials-only",
        action="store_true",
        help="run trials, leave the confirmation runs and tables to the study's other "
        "machine (several machines, one study)",
    )
    sw.add_argument("overrides", nargs="*")

    wk = sub.add_parser("sweep-worker", help=argparse.SUPPRESS)
    wk.add_argument("--config", "-c", default=None)
    wk.add_argument("--study", required=True)
    wk.add_argument("--storage", required=True)
    wk.add_argument("overrides", nargs="*")

    pa = sub.add_parser("paper", help="train every Table 1 row of a dataset, write its block")
    pa.add_argument("--config", "-c", default=None, help="sweeps/<dataset>.yaml")
    pa.add_argument(
        "--models",
        default="tsvit,vivit,timesformer,timesformer*",
        help="rows, comma-separated (timesformer* needs --checkpoint)",
    )
    pa.add_argument("--seeds", type=int, default=3)
    pa.add_argument("--checkpoint", default=None, help="local Kinetics-400 TimeSformer weights")
    pa.add_argument("--workers", type=int, default=1)
    pa.add_argument("overrides", nargs="*")

    pr = sub.add_parser(
        "prepare", help="read a dataset's index and decode its clip cache (no training)"
    )
    pr.add_argument("--config", "-c", default=None, help="sweeps/<dataset>.yaml")
    pr.add_argument("overrides", nargs="*")

    gu = sub.add_parser(
        "guidance",
        help="annotate the covered training videos' key regions (LLM, oracle or motion)",
    )
    gu.add_argument("--config", "-c", default=None, help="sweeps/<dataset>.yaml")
    gu.add_argument(
        "--dry-run", action="store_true", help="count requests, estimate cost; send nothing"
    )
    gu.add_argument("overrides", nargs="*")

    tb = sub.add_parser("tables", help="paper-style tables from finished, tracked runs")
    tb.add_argument(
        "--source",
        default="runs",
        help="a runs folder, or an MLflow URI (sqlite:///..., http://...)",
    )
    tb.add_argument("--dataset", default=None, help="only this dataset")
    tb.add_argument(
        "--stage", default=None, help="only runs of this stage (confirm, paper, train)"
    )
    tb.add_argument("--format", default="all", choices=["all", "md", "tex", "csv"])
    tb.add_argument("--out", default=None, help="folder (default: <source>/tables or runs/tables)")
    tb.add_argument("--study", default=None, help="also tabulate this Optuna study")
    tb.add_argument("--storage", default=None, help="the study's storage URL")

    fg = sub.add_parser("figures", help="Fig. 5 across runs, and a sweep's study plots")
    fg.add_argument("--source", default="runs", help="a runs folder, or an MLflow URI")
    fg.add_argument("--dataset", default=None)
    fg.add_argument("--stage", default=None)
    fg.add_argument("--out", default=None, help="folder (default: <source>/figures)")
    fg.add_argument("--study", default=None, help="also plot this Optuna study")
    fg.add_argument("--storage", default=None, help="the study's storage URL")

    sub.add_parser("models", help="list the registered models and datasets")

    c = sub.add_parser("config", help="print the resolved config")
    c.add_argument("--config", "-c", default=None)
    c.add_argument("overrides", nargs="*")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    console = Console()
    err = Console(stderr=True)
    if getattr(args, "nproc", 1) < 1:
        err.print(f"[red]error:[/] --nproc {args.nproc}: give 1 or more processes")
        return 2
    if getattr(args, "nproc", 1) > 1 and "WORLD_SIZE" not in os.environ:
        from rsexp.experiment.distributed import launch

        console.print(f"[bold]torchrun[/]: {args.nproc} processes on this machine, one run")
        return launch(args.nproc, _without_nproc(argv))
    try:
        if args.command == "train":
            from rsexp.experiment import train

            cfg = load_config(args.config, args.overrides)
            train(cfg, run_dir=args.run_dir, until_epoch=args.until_epoch, console=console)
        elif args.command == "resume":
            from rsexp.experiment import resume

            runs_dir = args.runs_dir
            if runs_dir is None:
                runs_dir = load_config(args.config, args.overrides).train.runs_dir
            resume(
                args.run,
                until_epoch=args.until_epoch,
                epochs=args.epochs,
                runs_dir=runs_dir,
                overrides=args.overrides,
                accept_changed_inputs=args.accept_changed_inputs,
                console=console,
            )
        elif args.command == "sweep":
            from rsexp.sweep.driver import sweep

            trials = [f"sweep.trials={args.trials}"] if args.trials is not None else []
            cfg = load_config(args.config, [*args.overrides, *trials])
            try:
                sweep(
                    cfg,
                    workers=args.workers,
                    storage=args.storage,
                    study_name=args.study,
                    reports=args.reports,
                    trials_only=args.trials_only,
                    console=console,
                )
            except SweepStopped as e:
                err.print("[red]sweep stopped:[/]", escape(str(e)))
                return 1
        elif args.command == "paper":
            from rsexp.grid.paper import paper

            paper(
                load_config(args.config, args.overrides),
                models=[m for m in args.models.split(",") if m],
                seeds=args.seeds,
                checkpoint=args.checkpoint,
                workers=args.workers,
                console=console,
            )
        elif args.command == "prepare":
            from rsexp.experiment import prepare

            prepare(load_config(args.config, args.overrides), console)
        elif args.command == "guidance":
            from rsexp.guidance.annotate import annotate

            summary = annotate(
                load_config(args.config, args.overrides), dry_run=args.dry_run, console=console
            )
            if summary.stopped:
                return 1
        elif args.command == "tables":
            from rsexp.report.tables_cli import tables

            return tables(args, console, err)
        elif args.command == "figures":
            from rsexp.report.tables_cli import figures

            return figures(args, console, err)
        elif args.command == "sweep-worker":
            from rsexp.sweep.worker import run_worker

            run_worker(load_config(args.config, args.overrides), args.study, args.storage, console)
        elif args.command == "models":
            import rsexp.core.models  # noqa: F401  (registers rsexp's own)
            import rsexp.data  # noqa: F401
            from rsexp.core.registry import MODELS
            from rsexp.data import DATASETS
            from rsexp.guidance.annotators import ANNOTATORS
            from rsexp.track import TRACKERS

            def listed(specs) -> str:
                return ", ".join(
                    s.name + ("" if s.origin == "rsexp" else f" ({s.origin})") for s in specs
                )

            console.print("models:     " + listed(MODELS), markup=False)
            console.print("datasets:   " + listed(DATASETS), markup=False)
            console.print("annotators: " + ", ".join(ANNOTATORS.names()), markup=False)
            console.print("trackers:   " + listed(TRACKERS), markup=False)
        elif args.command == "config":
            import yaml

            from rsexp.config import to_dict

            cfg = load_config(args.config, args.overrides)
            text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
            console.print(text, end="", markup=False, highlight=False)
    except USER_ERRORS as e:
        err.print("[red]error:[/]", escape(str(e)))
        return 2
    except (NonFiniteLossError, JobFailed) as e:  # recorded in summary.json and the trackers
        err.print("[red]run failed:[/]", escape(str(e)))
        return 1
    except Interrupted:
        return 130  # checkpointed, marked KILLED, resume command already printed
    except KeyboardInterrupt:
        err.print(
            "[yellow]interrupted[/] before training started; nothing to resume "
            "(clips already decoded stay in the clip cache)"
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
