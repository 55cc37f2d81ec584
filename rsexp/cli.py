"""``rsexp`` command line: train, resume, sweep, paper, prepare, guidance, tables, models,
config."""

from __future__ import annotations

import argparse
import os
import sys

from rich.console import Console
from rich.markup import escape

from rsexp.cli_examples import EXAMPLES
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


HIDDEN = ("sweep-worker",)  # started by rsexp sweep itself


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("rsexp")
    except metadata.PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rsexp",
        description="Reasoning Supervision experiments: train, sweep and tabulate video "
        "ViTs with spatial and temporal attention supervision",
        epilog="rsexp <command> --help shows each command's options and examples",
    )
    p.add_argument("--version", action="version", version=f"rsexp {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str):
        kw = {"help": help} if name not in HIDDEN else {}
        return sub.add_parser(
            name,
            description=help,
            epilog=EXAMPLES.get(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **kw,
        )

    def config_args(c, example="sweeps/<dataset>.yaml", overrides=True):
        c.add_argument("--config", "-c", default=None, help=f"YAML config (e.g. {example})")
        if overrides:
            c.add_argument(
                "overrides",
                nargs="*",
                help="dotted key=value overrides after the options, e.g. loss.tau=0.5",
            )

    def launcher(c):
        c.add_argument("--launcher", choices=["local", "slurm"], default="local",
                       help="this machine, or Slurm jobs (sweep.slurm.*)")  # fmt: skip

    def verbose(c):
        c.add_argument("--verbose", "-v", action="store_true",
                       help="print the whole resolved config first")  # fmt: skip

    t = command("train", "train and evaluate one run")
    config_args(t, "sweeps/synthetic.yaml", overrides=False)
    t.add_argument("--run-dir", default=None, help="run folder (default runs/<experiment>/<id>)")
    t.add_argument(
        "--until-epoch",
        type=int,
        default=None,
        help="stop (checkpointed) after this epoch; continue with rsexp resume",
    )
    t.add_argument("--nproc", type=int, default=1, help=NPROC_HELP)
    launcher(t)
    verbose(t)
    t.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. loss.tau=0.5")

    r = command("resume", "continue a run from its last checkpoint")
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
    r.add_argument("--until-epoch", type=int, default=None,
                   help="stop (checkpointed) after this epoch")  # fmt: skip
    r.add_argument("--epochs", type=int, default=None, help="extend the run to this many epochs")
    r.add_argument(
        "--accept-changed-inputs",
        action="store_true",
        help="continue although the guidance file, dataset index or clip cache changed "
        "since the run started (recorded as a param of the run)",
    )
    r.add_argument("--nproc", type=int, default=1, help=NPROC_HELP)
    verbose(r)

    sw = command("sweep", "Optuna sweep, then confirmation runs and tables")
    config_args(sw, overrides=False)
    sw.add_argument("--trials", type=int, default=None,
                    help="total trial budget (default sweep.trials)")  # fmt: skip
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
    launcher(sw)
    verbose(sw)
    sw.add_argument("overrides", nargs="*",
                    help="dotted key=value overrides, e.g. sweep.epochs=10")  # fmt: skip

    wk = command("sweep-worker", "one worker of a sweep (started by rsexp sweep)")
    config_args(wk)
    wk.add_argument("--study", required=True, help="the study's name")
    wk.add_argument("--storage", required=True, help="the study's storage URL")

    pa = command("paper", "train every Table 1 row of a dataset, write its block")
    config_args(pa, overrides=False)
    pa.add_argument(
        "--models",
        default="tsvit,vivit,timesformer,timesformer*",
        help="rows, comma-separated (timesformer* needs --checkpoint)",
    )
    pa.add_argument("--seeds", type=int, default=3, help="seeds per row (0 .. N-1)")
    pa.add_argument(
        "--checkpoint",
        default=None,
        help="local Kinetics-400 TimeSformer weights: the official file, or a Hugging Face "
        "save_pretrained folder (runs as model.name=hf)",
    )
    pa.add_argument("--workers", type=int, default=1, help="runs at once on this machine")
    launcher(pa)
    verbose(pa)
    pa.add_argument("overrides", nargs="*",
                    help="dotted key=value overrides, e.g. train.epochs=30")  # fmt: skip

    pr = command("prepare", "read a dataset's index and decode its clip cache (no training)")
    config_args(pr)

    gu = command(
        "guidance", "annotate the covered training videos' key regions (LLM, oracle or motion)"
    )
    config_args(gu, "sweeps/ucf50.yaml", overrides=False)
    gu.add_argument(
        "--dry-run", action="store_true", help="count requests, estimate cost; send nothing"
    )
    gu.add_argument("overrides", nargs="*",
                    help="dotted key=value overrides, e.g. guidance.annotator=motion")  # fmt: skip

    tb = command("tables", "paper-style tables from finished, tracked runs")
    tb.add_argument(
        "--source",
        default="runs",
        help="a runs folder, or an MLflow URI (sqlite:///..., http://...)",
    )
    tb.add_argument("--dataset", default=None, help="only this dataset")
    tb.add_argument(
        "--stage", default=None, help="only runs of this stage (confirm, paper, train)"
    )
    tb.add_argument("--format", default="all", choices=["all", "md", "tex", "csv"],
                    help="which files to write (default all three)")  # fmt: skip
    tb.add_argument("--out", default=None, help="folder (default: <source>/tables or runs/tables)")
    tb.add_argument("--study", default=None, help="also tabulate this Optuna study")
    tb.add_argument("--storage", default=None, help="the study's storage URL")

    fg = command("figures", "Fig. 5 across runs, and a sweep's study plots")
    fg.add_argument("--source", default="runs", help="a runs folder, or an MLflow URI")
    fg.add_argument("--dataset", default=None, help="only this dataset")
    fg.add_argument("--stage", default=None, help="only runs of this stage")
    fg.add_argument("--out", default=None, help="folder (default: <source>/figures)")
    fg.add_argument("--study", default=None, help="also plot this Optuna study")
    fg.add_argument("--storage", default=None, help="the study's storage URL")

    command("models", "list the registered models, datasets, annotators and trackers")

    c = command("config", "print the resolved config")
    config_args(c, "sweeps/synthetic.yaml")
    # internal commands stay callable, unlisted (argparse would print ==SUPPRESS==)
    sub._choices_actions = [a for a in sub._choices_actions if a.dest not in HIDDEN]
    return p


def _print_config(console: Console, cfg) -> None:
    import yaml

    from rsexp.config import to_dict

    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    console.print(text, end="", markup=False, highlight=False)


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
            if args.verbose:
                _print_config(console, cfg)
            if args.launcher == "slurm":
                from rsexp.grid.on_slurm import train_on_slurm

                train_on_slurm(cfg, args.run_dir, args.until_epoch, console)
            else:
                train(cfg, run_dir=args.run_dir, until_epoch=args.until_epoch, console=console)
        elif args.command == "resume":
            from rsexp.experiment import resume

            runs_dir = args.runs_dir
            if runs_dir is None:
                runs_dir = load_config(args.config, args.overrides).train.runs_dir
            if args.verbose:
                from rsexp.experiment.rundir import RunDir

                _print_config(console, RunDir.find(args.run, runs_dir).config())
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
            if args.verbose:
                _print_config(console, cfg)
            try:
                sweep(
                    cfg,
                    workers=args.workers,
                    storage=args.storage,
                    study_name=args.study,
                    reports=args.reports,
                    trials_only=args.trials_only,
                    launcher=args.launcher,
                    console=console,
                )
            except SweepStopped as e:
                err.print("[red]sweep stopped:[/]", escape(str(e)))
                return 1
        elif args.command == "paper":
            from rsexp.grid.paper import paper

            cfg = load_config(args.config, args.overrides)
            if args.verbose:
                _print_config(console, cfg)
            paper(
                cfg,
                models=[m for m in args.models.split(",") if m],
                seeds=args.seeds,
                checkpoint=args.checkpoint,
                workers=args.workers,
                launcher=args.launcher,
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
            _print_config(console, load_config(args.config, args.overrides))
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
