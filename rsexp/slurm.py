"""``--launcher slurm``: rsexp's jobs (sweep workers, confirmation and paper runs) as
Slurm jobs, submitted with submitit (the tool behind Hydra's Slurm launcher) rather than
a home-made sbatch writer.

A job runs :func:`call` on a node: the same ``"module:function"`` and typed arguments a
local :class:`rsexp.jobs.Job` gets (a :class:`~rsexp.config.Config`, never override
strings), pickled by submitit into ``<folder>/``, where its logs also go. The nodes must
see rsexp's Python environment and the runs folder (a shared disk), as on any cluster.

States come from ``sacct`` (Slurm accounting): one call per poll for every job. A job
is over when sacct says a final state, when submitit's result file exists, or, where
sacct knows no job (a cluster without accounting), when ``squeue`` no longer lists it.
"""

from __future__ import annotations

import importlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from rsexp.config import SlurmConfig
from rsexp.errors import ConfigError, JobFailed
from rsexp.jobs import Spec

FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL",
         "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "REVOKED"}  # fmt: skip


def _sigterm(signum, frame) -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def call(target: str, args: tuple):
    """What a Slurm job runs: ``target`` ("module:function") with ``args``.

    scancel's SIGTERM and the time limit's warning (SIGUSR2, submitit's ``--signal``)
    take the Ctrl-C path, as on a workstation: a run checkpoints after its current step
    and stops, its trial is marked interrupted and re-run from that checkpoint. (submitit
    itself ignores SIGTERM and, for SIGUSR2, raises an error or requeues wherever the
    process happens to be, which would record a trial as FAIL mid-step.)"""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGUSR2, _sigterm)
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(*args)


def check_cluster() -> None:
    """Slurm's client commands are here (a login node), before anything is created."""
    import shutil

    missing = [c for c in ("sbatch", "sacct", "scancel") if shutil.which(c) is None]
    if missing:
        raise ConfigError(
            f"--launcher slurm: {', '.join(missing)} not found on this machine's PATH; "
            "run the command on a node that submits Slurm jobs (a login node)"
        )


def refuse_sqlite(url: str, settings: SlurmConfig) -> None:
    """A SQLite study is a file on this machine: jobs on other nodes cannot lock it
    (and on a network disk its locking is not to be trusted)."""
    if url.startswith("sqlite") and not settings.allow_sqlite:
        raise ConfigError(
            f"--launcher slurm: the study's storage {url} is a SQLite file on this "
            "machine; jobs on other nodes need a database server: give --storage "
            "postgresql://user@host/db (or sweep.slurm.allow_sqlite=true when every node "
            "sees this file, e.g. a one-node cluster)"
        )


class SlurmJobs:
    """The jobs one command submitted: submit, follow (one ``sacct`` per poll), cancel.

    ``folder``: submitit's pickles and the jobs' logs (``<job id>_<task>_log.out|err``).
    ``gpus``: per job (``sweep.slurm.gpus_per_worker``, or ``sweep.nproc`` for a trial
    on several GPUs)."""

    def __init__(self, settings: SlurmConfig, folder: Path, name: str, gpus: int | None = None):
        import submitit

        self.folder = Path(folder)
        self.executor = submitit.AutoExecutor(folder=self.folder, cluster="slurm")
        extra = dict(settings.extra)
        for key, value in (("account", settings.account), ("qos", settings.qos)):
            if value:
                extra[key] = value
        gpus = settings.gpus_per_worker if gpus is None else gpus
        self.executor.update_parameters(
            name=name,
            timeout_min=settings.time,
            cpus_per_task=settings.cpus_per_worker,
            mem_gb=settings.mem_gb,
            tasks_per_node=1,
            nodes=1,
            **({"gpus_per_node": gpus} if gpus else {}),
            **({"slurm_partition": settings.partition} if settings.partition else {}),
            slurm_additional_parameters=extra,
        )
        self.jobs: list = []  # every job submitted, in order
        self.ended: set[str] = set()

    # -- submit
    def submit(self, target: str, arglist: list[tuple]) -> list:
        """One job per entry of ``arglist``, as one job array when there are several."""
        if len(arglist) == 1:
            jobs = [self.executor.submit(call, target, arglist[0])]
        else:
            jobs = self.executor.map_array(call, [target] * len(arglist), arglist)
        self.jobs += jobs
        return jobs

    # -- follow
    def poll(self) -> list:
        """Jobs that ended since the last poll (one ``sacct`` call for all of them; on a
        cluster without accounting, where sacct knows no job, one ``squeue``: a job no
        longer queued has ended)."""
        live = self.live()
        if not live:
            return []
        live[0].watcher.update()
        unknown = [j.job_id for j in live if self.state(j) == "UNKNOWN"]
        queued = _queued(unknown) if unknown else set()
        ended = [
            j
            for j in live
            if self.state(j) in FINAL
            or j.paths.result_pickle.exists()
            or (self.state(j) == "UNKNOWN" and j.job_id not in queued)
        ]
        self.ended |= {j.job_id for j in ended}
        return ended

    def live(self) -> list:
        return [j for j in self.jobs if j.job_id not in self.ended]

    @staticmethod
    def state(job) -> str:
        """sacct's state, first word (``CANCELLED by 0`` -> ``CANCELLED``)."""
        return (job.watcher.get_state(job.job_id, mode="cache") or "UNKNOWN").split()[0]

    def ok(self, job) -> bool:
        """Ended COMPLETED, its function returned (no error in the result file)."""
        if self.state(job) != "COMPLETED" and not job.paths.result_pickle.exists():
            return False
        return job.exception() is None

    def why(self, job) -> str:
        """A failed job's state, the error it raised (its last line) and its log."""
        error = ""
        if job.paths.result_pickle.exists() and (e := job.exception()) is not None:
            lines = str(e).strip().splitlines()
            error = f": {lines[-1][:300]}" if lines else ""
        state = self.state(job)
        if state == "UNKNOWN":
            state = "ended, state unknown (sacct knows no job: is Slurm accounting on?)"
        return f"Slurm job {job.job_id} {state}{error} (log: {job.paths.stderr})"

    def counts(self) -> dict[str, int]:
        """Live jobs by state, for the progress view."""
        out: dict[str, int] = {}
        for j in self.live():
            out[self.state(j)] = out.get(self.state(j), 0) + 1
        return out

    # -- stop
    def cancel(self) -> None:
        """scancel every live job: SIGTERM (their runs checkpoint and stop), SIGKILL
        after the cluster's KillWait."""
        import subprocess  # scancel, as submitit's own Job.cancel runs it

        ids = [j.job_id for j in self.live()]
        if ids:
            subprocess.call(["scancel", *ids])

    def wait_gone(self, timeout: float, received: list[int]) -> bool:
        """Poll until every job has ended (True), ``timeout`` passes or another signal
        arrives (False)."""
        seen, deadline = len(received), time.monotonic() + timeout
        while self.live() and time.monotonic() < deadline and len(received) == seen:
            self.poll()
            time.sleep(1.0)
        return not self.live()

    # -- many runs (a grid: confirmation runs, paper rows)
    def run_all(self, specs: dict, on_done: Callable[[object, object], None]) -> dict:
        """:func:`rsexp.jobs.run_all` on Slurm: every spec a task of one job array (Slurm
        runs as many at once as the cluster gives); ``spec.done(0 or 1)`` judges each.
        Ctrl-C cancels the jobs (their runs checkpoint) and is raised again."""
        keys = list(specs)
        jobs = self.submit(specs_target(specs), [specs[k].args for k in keys])
        key_of = {j.job_id: k for j, k in zip(jobs, keys, strict=True)}
        results, failed = {}, []
        try:
            while self.live():
                for job in self.poll():
                    key = key_of[job.job_id]
                    good, result = specs[key].done(0 if self.ok(job) else 1)
                    if good:
                        results[key] = result
                        on_done(key, result)
                    else:
                        failed.append(f"{specs[key].label or key}: {result or self.why(job)}")
                time.sleep(1.0)
        except KeyboardInterrupt:
            self.cancel()
            self.wait_gone(120, [])
            raise
        if failed:
            raise JobFailed("runs failed:\n  " + "\n  ".join(failed))
        return results


def _queued(ids: list[str]) -> set[str]:
    """Which of ``ids`` (``<job>`` or ``<array>_<task>``) squeue still lists; all of them
    when squeue cannot answer (a job is never taken for ended on no evidence)."""
    import subprocess

    arrays = sorted({i.split("_")[0] for i in ids})
    cmd = ["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(arrays)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if p.returncode != 0 and "Invalid job id" not in p.stderr:
        return set(ids)
    return set(p.stdout.split())


def specs_target(specs: dict[object, Spec]) -> str:
    """The one target a grid's specs share (what :meth:`SlurmJobs.run_all` submits)."""
    targets = {s.target for s in specs.values()}
    if len(targets) != 1:
        raise ValueError(f"one target per job array, got {sorted(targets)}")
    return targets.pop()
