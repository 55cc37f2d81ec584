"""``rsexp sweep``: the driver. Opens the study, starts the workers, shows a live view,
then hands over to the confirmation stage.

One sweep = one Optuna study in an RDB storage (SQLite under ``runs/<experiment>/`` by
default, PostgreSQL for several machines). The same command on another machine with
the same ``--storage`` joins it; running it again continues where it stopped. Trials
are linked to their run folders and tracked runs through trial user attributes, so a
trial re-run after its worker died continues the dead trial's run from its checkpoint.
"""

from __future__ import annotations

import signal
import time
from contextlib import ExitStack
from functools import partial

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from rsexp.config import Config, ConfigError, with_values
from rsexp.errors import RunInUse
from rsexp.experiment import Interrupted, prepare
from rsexp.experiment.build import preflight
from rsexp.experiment.interrupts import signals_as_flags
from rsexp.experiment.readout import epoch_metrics
from rsexp.experiment.rundir import folder_lock
from rsexp.jobs import Job, device_env, visible_gpus, worker_devices
from rsexp.slurm import check_cluster, refuse_sqlite
from rsexp.sweep import space as sp
from rsexp.sweep.common import (
    PARENT_ATTR,
    STOPPED_ATTR,
    SweepStopped,
    sweep_paths,
    trial_epochs,
)
from rsexp.sweep.confirm import confirm
from rsexp.sweep.on_slurm import run_trials_on_slurm, slurm_jobs
from rsexp.sweep.study import (
    budget_used,
    default_storage,
    make_storage,
    open_study,
    requeue_interrupted,
)
from rsexp.sweep.worker import waiting
from rsexp.track.base import RunStatus
from rsexp.track.parent import finish_parent_run, open_parent_run
from rsexp.track.provenance import redact_text


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


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
        shown = bt.user_attrs.get("values") or bt.user_attrs.get("knobs", {})
        params = ", ".join(f"{k}={_short(v)}" for k, v in shown.items())
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


def _start_workers(cfg: Config, study_name, storage_url, devices, root) -> list[Job]:
    """One worker per entry of ``devices`` (its GPU), each a spawned process given the
    sweep's base config as it is (typed); its output goes to ``worker-<i>.log``."""
    if len(devices) > 1:  # the cores are the workers'
        cfg = with_values(cfg, {"train.threads": 1})
    return [
        Job.spawn(
            "rsexp.sweep.worker:run_worker",
            (cfg, study_name, storage_url),
            name=f"worker {i}",
            log=root / f"worker-{i}.log",
            env=device_env(device),
        )
        for i, device in enumerate(devices)
    ]


def sweep(
    cfg: Config,
    *,
    workers: int = 1,
    storage: str | None = None,
    study_name: str | None = None,
    reports: str | None = None,
    trials_only: bool = False,
    launcher: str = "local",
    console: Console | None = None,
) -> dict:
    """Run (or continue) the sweep ``cfg.sweep`` describes over the base config ``cfg``,
    then the confirmation runs and the tables.

    ``launcher``: ``local`` (worker processes here) or ``slurm`` (a job array, and the
    confirmation runs as Slurm jobs: :mod:`rsexp.sweep.on_slurm`).

    Returns:
        ``{"study", "best_trial", "best_value", "best_values", "reports": [paths]}``.
    """
    console = console or Console()
    if cfg.sweep.objective.startswith("val/") and cfg.data.val_fraction == 0:
        raise ConfigError(
            f"sweep.objective: {cfg.sweep.objective} needs a validation split, but "
            f"data.val_fraction is 0; the test split never chooses"
        )
    preflight(cfg)  # a typo or a missing dataset: before the study or any run exists
    sp.check_space(cfg)  # and every point of the search space is a config the run takes
    metrics = epoch_metrics(cfg)
    if cfg.sweep.objective not in metrics:
        raise ConfigError(
            f"sweep.objective: no run logs {cfg.sweep.objective!r} every epoch; the "
            f"objective is one of {', '.join(metrics)}"
        )
    if launcher == "slurm":  # the nodes' GPUs are Slurm's to give; the study must be shared
        refuse_sqlite(storage or default_storage(cfg), cfg.sweep.slurm)
        check_cluster()
        devices: list[str | None] = [None] * workers
    else:
        devices = worker_devices(cfg.sweep.devices, workers, visible_gpus(), cfg.sweep.nproc)
    # Check the data is there, read the index, decode the clip cache and load the guidance
    # once, here: the workers start on a warm cache and a data problem (missing data
    # first) stops the sweep before anything is created.
    prepare(cfg, console)
    if cfg.data.val_fraction > 0:  # the confirmation runs train on the whole training side
        prepare(with_values(cfg, {"data.val_fraction": 0.0}), console)
    study_name = study_name or f"{cfg.experiment}-{cfg.model.name}"
    storage_url = storage or default_storage(cfg)
    paths = sweep_paths(cfg, study_name, reports)
    paths.root.mkdir(parents=True, exist_ok=True)
    # two drivers of one study set it up one after the other: one first trial of the
    # paper's settings, one MLflow parent run
    with folder_lock(paths.root / ".setup.lock", f"sweep {study_name}'s setup", wait=120):
        study = open_study(study_name, make_storage(storage_url, cfg), cfg, trial_epochs(cfg))
        if study.user_attrs.get("budget") != cfg.sweep.trials:
            study.set_user_attr("budget", cfg.sweep.trials)
        if study.user_attrs.get(STOPPED_ATTR):  # run again on purpose: try again
            study.set_user_attr(STOPPED_ATTR, None)
        if not study.get_trials(deepcopy=False):  # the paper's settings go first
            study.enqueue_trial(sp.trial_params(sp.values_of(cfg), cfg.sweep.space))
        fail_stale_trials(study)
        requeued = requeue_interrupted(study)
        _parent_run(cfg, study)
    console.rule(f"[bold]rsexp sweep[/] {study_name} ({escape(redact_text(storage_url))})")
    if requeued:
        console.print(f"re-running interrupted trials {requeued} from their checkpoints")
    if any(d is not None for d in devices):
        shown = ", ".join(f"{i}: {d or 'cpu'}" for i, d in enumerate(devices))
        console.print(f"workers and their GPUs (CUDA_VISIBLE_DEVICES): {shown}")

    try:
        if launcher == "slurm":
            table = partial(live_table, budget=cfg.sweep.trials)
            run_trials_on_slurm(cfg, study, storage_url, workers, paths, console, table)
        else:
            _run_trials(cfg, study, storage_url, devices, paths, console)
        if study.user_attrs.get(STOPPED_ATTR):
            raise SweepStopped(
                f"sweep {study_name} stopped before its budget: "
                f"{study.user_attrs[STOPPED_ATTR]}. Fix the cause and run the same command "
                f"again to continue (worker logs: {paths.root}/worker-<i>.log)"
            )
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            reasons = sorted(
                {t.user_attrs.get("fail_reason", "") for t in study.get_trials()} - {""}
            )
            raise SweepStopped(
                f"sweep {study_name}: no trial completed"
                + (f" (trial failures: {'; '.join(reasons[:3])})" if reasons else "")
                + f"; see {paths.root}/worker-*.log"
            )
        if trials_only:  # another machine's driver confirms (several machines, one study)
            console.print(
                f"trials done ({budget_used(study)} of {cfg.sweep.trials}); "
                "--trials-only: no confirmation runs or tables from this machine"
            )
            return {"study": study_name, "reports": []}
        with ExitStack() as held:
            try:
                what = f"sweep {study_name}'s confirmation stage"
                held.enter_context(folder_lock(paths.root / ".confirm.lock", what))
            except RunInUse as e:  # another driver of this study confirms: this one joined
                console.print(
                    f"trials done ({budget_used(study)} of {cfg.sweep.trials}); the "
                    f"confirmation runs and tables are another driver's: {escape(str(e))}"
                )
                return {"study": study_name, "reports": []}
            if launcher == "slurm":
                jobs = slurm_jobs(cfg, paths, "confirm")
                console.print(f"confirmation runs: Slurm jobs (logs: {jobs.folder})")
                return confirm(cfg, study, paths, devices, console, runner=jobs.run_all)
            return confirm(cfg, study, paths, devices, console)
    except KeyboardInterrupt:
        _close_parent(cfg, study, RunStatus.KILLED)
        raise
    except Exception:  # the parent run says how the sweep ended; the error goes on
        _close_parent(cfg, study, RunStatus.FAILED)
        raise


def _close_parent(cfg: Config, study: optuna.Study, status: RunStatus) -> None:
    finish_parent_run(
        cfg.track,
        cfg.train.runs_dir,
        study.user_attrs.get(PARENT_ATTR),
        cfg.experiment,
        status=status,
    )


def _run_trials(cfg, study, storage_url, devices, paths, console) -> None:
    """Start workers until the whole budget is COMPLETE, PRUNED or FAIL.

    A trial still RUNNING that no worker of this driver owns (a worker on another
    machine, or one whose driver was killed) is waited for: it finishes, or its
    heartbeat goes stale after ``sweep.grace_period`` and it is failed and queued for a
    re-run that continues its run folder; then workers start again to run it.

    Ctrl-C / SIGTERM: the workers run in their own sessions (a terminal's Ctrl-C reaches
    the driver only), so the driver passes it on exactly once; each worker checkpoints
    its trial and exits, and the driver waits for them. A second Ctrl-C kills the
    workers at once (their trials re-run from the last checkpoint next time).
    """
    budget, jobs, said = cfg.sweep.trials, [], []

    def table():
        return live_table(study, budget)

    def pass_on(received: list[int]) -> None:
        """Called from the signal handler at once and by the loop after starting
        workers: each worker gets each signal once (once: SIGINT; again: SIGKILL)."""
        if received and not said:
            said.append(True)
            console.print(
                f"[yellow]{signal.Signals(received[0]).name}[/]: the workers checkpoint "
                "their trials and stop (again to kill them now)"
            )
        for job in jobs:
            while job.poll() is None and job.interrupted < len(received):
                job.interrupt()

    with (
        signals_as_flags(on_signal=pass_on) as received,
        Live(table(), console=console, refresh_per_second=1) as live,
    ):
        while not received:
            fail_stale_trials(study)
            requeue_interrupted(study)
            if study.user_attrs.get(STOPPED_ATTR):
                return
            if budget_used(study) < budget or waiting(study):
                jobs = _start_workers(cfg, study.study_name, storage_url, devices, paths.root)
                while any(job.poll() is None for job in jobs):
                    pass_on(received)
                    time.sleep(0.2 if received else 1.0)
                    live.update(table())
                bad = [f"{j.name}: {j.reason}" for j in jobs if j.poll() != 0]
                if bad and not received:
                    raise RuntimeError(
                        "sweep workers failed: "
                        + "; ".join(bad)
                        + f" (see {paths.root}/worker-<i>.log)"
                    )
                continue
            if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                live.update(table())
                return
            time.sleep(1.0)  # a trial another process owns: wait for it
            live.update(table())
        live.update(table())
    console.print(
        f"[yellow]interrupted[/]; run the same command again to continue "
        f"(study {study.study_name} in {escape(redact_text(storage_url))})"
    )
    raise Interrupted("sweep interrupted")
