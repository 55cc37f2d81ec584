"""``rsexp sweep``: the driver. Opens the study, starts the workers, shows a live view,
then hands over to the confirmation stage.

One sweep = one Optuna study in an RDB storage (SQLite under ``runs/<experiment>/`` by
default, PostgreSQL for several machines). The same command on another machine with
the same ``--storage`` joins it; running it again continues where it stopped. Trials
are linked to their run folders and tracked runs through trial user attributes, so a
trial re-run after its worker died continues the dead trial's run from its checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from rsexp.config import Config, load_config
from rsexp.experiment import Interrupted, prepare
from rsexp.sweep import space as sp
from rsexp.sweep.common import PARENT_ATTR, STOPPED_ATTR, sweep_paths, trial_epochs
from rsexp.sweep.confirm import confirm
from rsexp.sweep.study import (
    budget_used,
    default_storage,
    make_storage,
    open_study,
    requeue_interrupted,
)
from rsexp.sweep.worker import waiting
from rsexp.track.parent import open_parent_run


class SweepStopped(RuntimeError):
    """The sweep stopped before its budget (trials failing the same way); says why."""


def live_table(study: optuna.Study, budget: int) -> Table:
    trials = study.get_trials(deepcopy=False)
    by = {s: sum(t.state == s for t in trials) for s in TrialState}
    table = Table(title=f"sweep {study.study_name}: {budget_used(study)}/{budget} trials")
    for col in ("done", "pruned", "failed", "running", "best", "best params"):
        table.add_column(col)
    best, params = "-", ""
    if by[TrialState.COMPLETE]:
        bt = study.best_trial
        best = f"{bt.value:.2f} (trial {bt.number})"
        params = ", ".join(f"{k}={v:.3g}" for k, v in bt.user_attrs.get("knobs", {}).items())
    table.add_row(
        *(str(by[s]) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)),
        str(by[TrialState.RUNNING]),
        best,
        params,
    )
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("fail_reason"):
            table.add_row(
                "", "", f"#{t.number}", "", "", escape(t.user_attrs["fail_reason"][:100])
            )
    return table


def _parent_run(cfg: Config, study: optuna.Study) -> str | None:
    """One MLflow parent run per sweep, its id kept in the study."""
    if PARENT_ATTR in study.user_attrs:
        return study.user_attrs[PARENT_ATTR]
    tags = {
        "sweep": study.study_name,
        "stage": "sweep",
        "dataset": cfg.data.name,
        "model": cfg.model.name,
    }
    ref = open_parent_run(
        cfg.track, cfg.train.runs_dir, f"sweep-{study.study_name}", cfg.experiment, tags
    )
    if ref:
        study.set_user_attr(PARENT_ATTR, ref)
    return ref


def _start_workers(config, overrides, study_name, storage_url, workers, root) -> list:
    procs = []
    for i in range(workers):
        log = open(root / f"worker-{i}.log", "a")
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
    return procs


def sweep(
    config: str | None,
    overrides: list[str],
    *,
    trials: int | None = None,
    workers: int = 1,
    storage: str | None = None,
    study_name: str | None = None,
    reports: str | None = None,
    console: Console | None = None,
) -> dict:
    """Run (or continue) a sweep, then the confirmation runs and the tables.

    Returns:
        ``{"study", "best_trial", "best_value", "best_knobs", "reports": [paths]}``.
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
    if study.user_attrs.get(STOPPED_ATTR):  # run again on purpose: try again
        study.set_user_attr(STOPPED_ATTR, None)
    if not study.get_trials(deepcopy=False):  # the paper's settings go first
        study.enqueue_trial(sp.trial_params(sp.knobs_of(cfg), cfg.sweep.space))
    fail_stale_trials(study)
    requeued = requeue_interrupted(study)
    _parent_run(cfg, study)
    paths = sweep_paths(cfg, study_name, reports)
    paths.root.mkdir(parents=True, exist_ok=True)
    console.rule(f"[bold]rsexp sweep[/] {study_name} ({escape(storage_url)})")
    if requeued:
        console.print(f"re-running interrupted trials {requeued} from their checkpoints")

    procs = []
    if budget_used(study) < cfg.sweep.trials or waiting(study):
        procs = _start_workers(config, overrides, study_name, storage_url, workers, paths.root)
    try:
        with Live(
            live_table(study, cfg.sweep.trials), console=console, refresh_per_second=1
        ) as live:
            while any(p.poll() is None for p in procs):
                time.sleep(1.0)
                live.update(live_table(study, cfg.sweep.trials))
            live.update(live_table(study, cfg.sweep.trials))
    except KeyboardInterrupt:
        for p in procs:  # the workers got the same Ctrl-C: they checkpoint and stop
            p.wait()
        console.print(
            f"[yellow]interrupted[/]; run the same command again to continue "
            f"(study {study_name} in {escape(storage_url)})"
        )
        raise Interrupted("sweep interrupted") from None
    bad = [i for i, p in enumerate(procs) if p.returncode not in (0, None)]
    if bad:
        raise RuntimeError(f"sweep workers {bad} failed; see {paths.root}/worker-<i>.log")
    stopped = optuna.load_study(study_name=study_name, storage=storage_url).user_attrs
    if stopped.get(STOPPED_ATTR):
        raise SweepStopped(
            f"sweep {study_name} stopped before its budget: {stopped[STOPPED_ATTR]}. Fix "
            f"the cause and run the same command again to continue (worker logs: "
            f"{paths.root}/worker-<i>.log)"
        )
    return confirm(cfg, overrides, config, study, paths, workers, console)
