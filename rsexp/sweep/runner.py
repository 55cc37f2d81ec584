"""``rsexp sweep``: Optuna trials (each one tracked experiment), confirmation runs, tables.

One sweep = one Optuna study in an RDB storage (SQLite under ``runs/<dataset>/`` by
default, PostgreSQL for several machines). ``rsexp sweep`` starts ``--workers`` worker
processes on the study and shows a live view; the same command on another machine with
the same ``--storage`` joins it; running it again continues where it stopped. Trials are
linked to their run folders and tracked runs through trial user attributes, so a trial
re-run after its worker died resumes the dead trial's run from its checkpoint.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState
from rich.console import Console
from rich.live import Live
from rich.table import Table

from rsexp.config import Config, load_config
from rsexp.core.step import NonFiniteLossError
from rsexp.experiment import Interrupted, StopRun, prepare, resume, train
from rsexp.sweep import space as sp
from rsexp.sweep.study import (
    budget_used,
    counts,
    default_storage,
    make_storage,
    open_study,
    requeue_interrupted,
)

PARENT_ATTR = "mlflow_parent_run_id"


@dataclass
class SweepPaths:
    root: Path  # runs/<experiment>/sweep-<study>/
    reports: Path  # reports/<experiment>/

    def trial(self, number: int) -> Path:
        return self.root / f"trial-{number:04d}"

    def confirm(self, method: str, seed: int) -> Path:
        return self.root / "confirm" / f"{method}-s{seed}"


def sweep_paths(cfg: Config, study_name: str) -> SweepPaths:
    root = Path(cfg.train.runs_dir) / cfg.experiment / f"sweep-{study_name}"
    return SweepPaths(root, Path("reports") / cfg.experiment)


def trial_epochs(cfg: Config) -> int:
    return cfg.sweep.epochs or cfg.train.epochs


def _tags(study_name: str, stage: str, parent: str | None, **extra) -> list[str]:
    tags = {"sweep": study_name, "stage": stage, **extra}
    if parent:
        tags["mlflow.parentRunId"] = parent
    return [f"track.tags={json.dumps(tags)}", f"track.wandb.group={study_name}"]


# ------------------------------------------------------------------------------ worker


class Objective:
    """One trial = one tracked experiment; ``val/top1`` (or the configured objective) of
    the last epoch is the value. A non-finite loss or any other failure propagates and
    Optuna records the trial as FAIL with its reason; it is never scored."""

    def __init__(
        self,
        cfg: Config,
        overrides: list[str],
        study_name: str,
        paths: SweepPaths,
        parent: str | None,
        console: Console,
    ):
        self.cfg, self.overrides = cfg, overrides
        self.study_name, self.paths, self.parent = study_name, paths, parent
        self.console = console

    def __call__(self, trial: optuna.Trial) -> float:
        study = trial.study
        # A re-run (of a trial whose worker died, or that Ctrl-C ended) inherits that
        # trial's user attributes, run_dir among them: it resumes that run.
        previous = trial.user_attrs.get("run_dir")
        if previous is None and self._is_surplus(study, trial.number):
            trial.set_user_attr("surplus", True)
            study.stop()
            raise optuna.TrialPruned("trial budget already used by other workers")
        knobs = sp.sample(trial, self.cfg.sweep.space)
        trial.set_user_attr("knobs", knobs)
        epochs = trial_epochs(self.cfg)

        def report(record: dict) -> None:
            trial.report(record[self.cfg.sweep.objective], record["epoch"])
            if trial.should_prune():
                raise StopRun(f"pruned at epoch {record['epoch']}")

        quiet = Console(file=io.StringIO())
        try:
            if previous is not None:
                run_dir = Path(previous)
                self.console.print(f"trial {trial.number}: resuming {run_dir}")
                if (run_dir / "checkpoints" / "last.pt").is_file():
                    result = resume(run_dir, console=quiet, on_epoch=report)
                else:  # it died before its first checkpoint
                    cfg = load_config(None, self._overrides(knobs, trial.number, epochs))
                    result = train(cfg, run_dir=run_dir, console=quiet, on_epoch=report)
            else:
                run_dir = self.paths.trial(trial.number)
                trial.set_user_attr("run_dir", str(run_dir))
                cfg = load_config(None, self._overrides(knobs, trial.number, epochs))
                result = train(cfg, run_dir=run_dir, console=quiet, on_epoch=report)
        except StopRun as e:
            self._link(trial, run_dir)
            raise optuna.TrialPruned(str(e)) from None
        except NonFiniteLossError as e:
            trial.set_user_attr("fail_reason", str(e))
            self._link(trial, run_dir)
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        self._link(trial, run_dir)
        return float(result.summary[self.cfg.sweep.objective])

    def _overrides(self, knobs, number: int, epochs: int) -> list[str]:
        return [
            *self.overrides,
            *sp.to_overrides(knobs),
            f"train.epochs={epochs}",
            *_tags(self.study_name, "trial", self.parent, trial=str(number)),
        ]

    def _is_surplus(self, study: optuna.Study, number: int) -> bool:
        trials = [t for t in study.get_trials(deepcopy=False) if t.number < number]
        return len(counts(trials)) >= self.cfg.sweep.trials

    @staticmethod
    def _link(trial: optuna.Trial, run_dir: Path) -> None:
        ledger = run_dir / "trackers.json"
        if ledger.is_file():
            for backend, entry in json.loads(ledger.read_text()).items():
                if entry.get("run_id"):
                    trial.set_user_attr(f"{backend}_run_id", entry["run_id"])


def run_worker(
    config: str | None,
    overrides: list[str],
    study_name: str,
    storage_url: str,
    console: Console | None = None,
) -> None:
    """One worker: take trials from the study until the budget is used."""
    console = console or Console()
    cfg = load_config(config, overrides)
    storage = make_storage(storage_url, cfg)
    study = open_study(study_name, storage, cfg, trial_epochs(cfg))
    paths = sweep_paths(cfg, study_name)
    parent = study.user_attrs.get(PARENT_ATTR)
    objective = Objective(cfg, _flat_overrides(cfg), study_name, paths, parent, console)

    def stop_at_budget(study: optuna.Study, _trial) -> None:
        if budget_used(study) >= cfg.sweep.trials and not _waiting(study):
            study.stop()

    fail_stale_trials(study)  # a dead worker's trial is failed and queued for a re-run
    if budget_used(study) >= cfg.sweep.trials and not _waiting(study):
        return
    study.optimize(objective, catch=(Exception,), callbacks=[stop_at_budget])


def _waiting(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _flat_overrides(cfg: Config) -> list[str]:
    """Every trial is built from the full resolved base config, as overrides, so a worker
    on another machine with the same command builds the same trials."""
    from rsexp.config import flatten, to_dict

    flat = flatten(to_dict(cfg))
    return [f"{k}={json.dumps(v)}" for k, v in flat.items() if not k.startswith("sweep.")]


# ------------------------------------------------------------------------------ driver


def _live_table(study: optuna.Study, budget: int) -> Table:
    trials = study.get_trials(deepcopy=False)
    by = {s: sum(t.state == s for t in trials) for s in TrialState}
    table = Table(title=f"sweep {study.study_name}: {budget_used(study)}/{budget} trials")
    for col in ("done", "pruned", "failed", "running", "best", "best params"):
        table.add_column(col)
    best = "-"
    params = ""
    try:
        bt = study.best_trial
        best = f"{bt.value:.2f} (trial {bt.number})"
        params = ", ".join(f"{k}={v:.3g}" for k, v in bt.user_attrs.get("knobs", {}).items())
    except ValueError:
        pass
    table.add_row(
        str(by[TrialState.COMPLETE]),
        str(by[TrialState.PRUNED]),
        str(by[TrialState.FAIL]),
        str(by[TrialState.RUNNING]),
        best,
        params,
    )
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("fail_reason"):
            table.add_row("", "", f"#{t.number}", "", "", t.user_attrs["fail_reason"][:80])
    return table


def _parent_run(cfg: Config, study: optuna.Study, console: Console) -> str | None:
    """One MLflow parent run per sweep; trials and confirmation runs are its children."""
    if "mlflow" not in cfg.track.backends:
        return None
    if PARENT_ATTR in study.user_attrs:
        return study.user_attrs[PARENT_ATTR]
    from rsexp.track.base import RunInfo
    from rsexp.track.mlflow_writer import MlflowWriter

    writer = MlflowWriter(
        cfg.track.mlflow.tracking_uri, cfg.track.mlflow.experiment, cfg.train.runs_dir
    )
    ref = writer.start(
        RunInfo(
            Path("."),
            f"sweep-{study.study_name}",
            cfg.experiment,
            {
                "sweep": study.study_name,
                "stage": "sweep",
                "dataset": cfg.data.name,
                "model": cfg.model.name,
            },
        )
    )
    study.set_user_attr(PARENT_ATTR, ref)
    return ref


def sweep(
    config: str | None,
    overrides: list[str],
    *,
    trials: int | None = None,
    workers: int = 1,
    storage: str | None = None,
    study_name: str | None = None,
    console: Console | None = None,
) -> dict:
    """Run (or continue) a sweep, then the confirmation runs and the tables.

    Returns:
        ``{"study", "best", "reports": [paths]}``.
    """
    console = console or Console()
    if trials is not None:
        overrides = [*overrides, f"sweep.trials={trials}"]
    cfg = load_config(config, overrides)
    # Check the data is there, read the index, decode the clip cache and load the guidance
    # once, here: the workers start on a warm cache and a data problem (missing data
    # first) stops the sweep before anything is created.
    prepare(cfg, console)
    study_name = study_name or f"{cfg.experiment}-{cfg.model.name}"
    storage_url = storage or default_storage(cfg)
    study = open_study(study_name, make_storage(storage_url, cfg), cfg, trial_epochs(cfg))
    if study.user_attrs.get("budget") != cfg.sweep.trials:
        study.set_user_attr("budget", cfg.sweep.trials)
    if not study.get_trials(deepcopy=False):  # the paper's settings go first
        study.enqueue_trial(sp.trial_params(sp.knobs_of(cfg), cfg.sweep.space))
    fail_stale_trials(study)
    requeued = requeue_interrupted(study)
    _parent_run(cfg, study, console)
    paths = sweep_paths(cfg, study_name)
    paths.root.mkdir(parents=True, exist_ok=True)
    console.rule(f"[bold]rsexp sweep[/] {study_name} ({storage_url})")
    if requeued:
        console.print(f"re-running interrupted trials {requeued} from their checkpoints")

    procs = []
    if budget_used(study) < cfg.sweep.trials or _waiting(study):
        for i in range(workers):
            log = open(paths.root / f"worker-{i}.log", "a")
            cmd = [
                sys.executable,
                "-m",
                "rsexp.cli",
                "sweep-worker",
                "--study",
                study_name,
                "--storage",
                storage_url,
            ]
            if config:
                cmd += ["--config", str(config)]
            threads = [] if workers == 1 else ["train.threads=1"]
            procs.append(
                subprocess.Popen(
                    [*cmd, *overrides, *threads],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=os.environ.copy(),
                )
            )
    try:
        with Live(
            _live_table(study, cfg.sweep.trials), console=console, refresh_per_second=1
        ) as live:
            while any(p.poll() is None for p in procs):
                time.sleep(1.0)
                live.update(_live_table(study, cfg.sweep.trials))
            live.update(_live_table(study, cfg.sweep.trials))
    except KeyboardInterrupt:
        for p in procs:  # the workers got the same Ctrl-C: they checkpoint and stop
            p.wait()
        console.print(
            f"[yellow]interrupted[/]; run the same command again to continue "
            f"(study {study_name} in {storage_url})"
        )
        raise Interrupted("sweep interrupted") from None
    bad = [i for i, p in enumerate(procs) if p.returncode not in (0, None)]
    if bad:
        raise RuntimeError(f"sweep workers {bad} failed; see {paths.root}/worker-<i>.log")

    from rsexp.sweep.confirm import confirm

    return confirm(cfg, overrides, config, study, paths, workers, console)
