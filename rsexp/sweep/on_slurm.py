"""``rsexp sweep --launcher slurm``: the sweep's workers as one Slurm job array.

Each task of the array is the worker ``rsexp sweep`` starts locally
(:func:`rsexp.sweep.worker.run_worker`, given the sweep's typed base config), on a node
of its own, sharing the study through its database. The driver stays where it was
started (a login node, or a small job of its own): it follows the jobs and the study in
the same live table, replaces a job that failed, ran out of time or was pre-empted while
budget remains (its trial, checkpointed on the way out or failed by its stale
heartbeat, is re-run from its checkpoint by the next worker to start), and cancels the
jobs on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import signal
import time

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState
from rich.console import Console
from rich.live import Live
from rich.markup import escape

from rsexp.config import Config
from rsexp.experiment import Interrupted
from rsexp.experiment.interrupts import signals_as_flags
from rsexp.slurm import SlurmJobs
from rsexp.sweep.common import STOPPED_ATTR, SweepPaths
from rsexp.sweep.study import budget_used, requeue_interrupted
from rsexp.sweep.worker import waiting

WORKER = "rsexp.sweep.worker:run_worker"
POLL_S = 2.0


def slurm_jobs(cfg: Config, paths: SweepPaths, what: str) -> SlurmJobs:
    """The jobs of one stage (``what``: workers, confirm), logs in ``<sweep>/slurm/``; a
    trial on several GPUs (``sweep.nproc``) asks for that many."""
    gpus = cfg.sweep.nproc if cfg.sweep.nproc > 1 else None
    name = f"rsexp-{paths.root.name.removeprefix('sweep-')}-{what}"
    return SlurmJobs(cfg.sweep.slurm, paths.root / "slurm", name, gpus=gpus)


def run_trials_on_slurm(
    cfg: Config,
    study: optuna.Study,
    storage_url: str,
    workers: int,
    paths: SweepPaths,
    console: Console,
    table,
) -> None:
    """Submit ``workers`` workers as one job array and follow them until the whole budget
    is COMPLETE, PRUNED or FAIL (``table(study)``: the live view). A job that ends
    without finishing its work while budget remains is replaced, up to
    ``sweep.slurm.resubmits`` times; past that the sweep stops naming each failure."""
    jobs = slurm_jobs(cfg, paths, "worker")
    budget, args = cfg.sweep.trials, (cfg, study.study_name, storage_url)
    failures: list[str] = []

    def more() -> bool:
        return budget_used(study) < budget or waiting(study)

    def view():
        shown = table(study)
        by = ", ".join(f"{n} {s.lower()}" for s, n in sorted(jobs.counts().items()))
        shown.caption = f"Slurm jobs: {by or 'none live'} | logs: {jobs.folder}"
        return shown

    with (
        signals_as_flags() as received,
        Live(view(), console=console, refresh_per_second=1) as live,
    ):
        while not received:
            fail_stale_trials(study)  # a killed job's trial: failed, queued for a re-run
            requeue_interrupted(study)  # a cancelled job's trial: checkpointed, queued
            if study.user_attrs.get(STOPPED_ATTR):
                jobs.cancel()
                return
            for job in jobs.poll():
                if jobs.ok(job):
                    continue
                failures.append(jobs.why(job))
                live.console.print(f"[yellow]{escape(failures[-1])}[/]")
                if not more():
                    continue
                if len(failures) > cfg.sweep.slurm.resubmits:
                    jobs.cancel()
                    raise RuntimeError(
                        f"sweep workers failed {len(failures)} times "
                        f"(sweep.slurm.resubmits={cfg.sweep.slurm.resubmits}):\n  "
                        + "\n  ".join(failures)
                    )
                (new,) = jobs.submit(WORKER, [args])
                live.console.print(f"resubmitted the worker as Slurm job {new.job_id}")
            if not jobs.live():
                if more():  # the first array, or trials queued after the workers left
                    submitted = jobs.submit(WORKER, [args] * workers)
                    ids = submitted[0].job_id.split("_")[0]
                    live.console.print(f"submitted {workers} worker(s): Slurm job {ids}")
                elif not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                    live.update(view())
                    return
            time.sleep(POLL_S)
            live.update(view())
        live.console.print(
            f"[yellow]{signal.Signals(received[0]).name}[/]: cancelling the Slurm "
            "jobs (their trials checkpoint and stop; again to stop waiting for them)"
        )
        jobs.cancel()
        # Slurm ends them: SIGTERM, then SIGKILL after the cluster's KillWait (a
        # "scancel --signal=KILL" is a cancel like any other, SIGTERM first)
        if not jobs.wait_gone(300, received):
            live.console.print("[yellow]not waiting[/]: the cancelled jobs end on their own")
        live.update(view())
    console.print(
        f"[yellow]interrupted[/]; run the same command again to continue "
        f"(study {study.study_name})"
    )
    raise Interrupted("sweep interrupted")
