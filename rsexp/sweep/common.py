"""Names the sweep's driver, workers and confirmation stage share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rsexp.config import Config, ConfigError, flatten, load_config, to_dict
from rsexp.errors import JobFailed, SweepStopped  # noqa: F401 (raised here)

PARENT_ATTR = "mlflow_parent_run_id"  # study attribute: the sweep's MLflow parent run
STOPPED_ATTR = "stopped"  # study attribute: why the sweep stopped before its budget


@dataclass
class SweepPaths:
    """Where one study writes: ``runs/<experiment>/sweep-<study>/`` holds its trials'
    and confirmation runs' folders, the workers' logs and ``reports/`` (the tables),
    unless ``--reports`` names another folder."""

    root: Path
    reports: Path

    def trial(self, number: int) -> Path:
        return self.root / f"trial-{number:04d}"

    def confirm(self, method: str, seed: int) -> Path:
        return self.root / "confirm" / f"{method}-s{seed}"


def sweep_paths(cfg: Config, study_name: str, reports: str | Path | None = None) -> SweepPaths:
    root = Path(cfg.train.runs_dir) / cfg.experiment / f"sweep-{study_name}"
    return SweepPaths(root, Path(reports) if reports else root / "reports")


def trial_epochs(cfg: Config) -> int:
    return cfg.sweep.epochs or cfg.train.epochs


def run_tags(study_name: str, stage: str, parent: str | None, **extra) -> list[str]:
    """Overrides that tag a trial or confirmation run: sweep, stage (``trial`` |
    ``confirm``), the MLflow parent run, the W&B group."""
    tags = {"sweep": study_name, "stage": stage, **extra}
    if parent:
        tags["mlflow.parentRunId"] = parent
    return [f"track.tags={json.dumps(tags)}", f"track.wandb.group={study_name}"]


def flat_overrides(cfg: Config) -> list[str]:
    """Every trial is built from the full resolved base config, as overrides, so a worker
    on another machine with the same command builds the same trials."""
    flat = flatten(to_dict(cfg))
    return [f"{k}={json.dumps(v)}" for k, v in flat.items() if not k.startswith("sweep.")]


def visible_gpus() -> list[str]:
    """The GPUs this process may hand out, as ``CUDA_VISIBLE_DEVICES`` ids: those the
    inherited ``CUDA_VISIBLE_DEVICES`` names, else ``0 .. n-1`` (CUDA is not
    initialised: the count comes from NVML)."""
    import os

    import torch

    n = torch.cuda.device_count()
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is not None:
        return [d.strip() for d in inherited.split(",") if d.strip()][:n]
    return [str(i) for i in range(n)]


def worker_devices(
    spec: str, workers: int, gpus: list[str], per_worker: int = 1
) -> list[str | None]:
    """Per worker, the ``CUDA_VISIBLE_DEVICES`` it runs with (None: inherited), from
    ``sweep.devices`` and the visible ``gpus`` (:func:`visible_gpus`); ``per_worker``
    GPUs each (``sweep.nproc``: a trial on several GPUs)."""
    spec = spec.strip()
    if spec == "cpu":
        return [""] * workers
    if spec == "auto":
        if not gpus:
            return [None] * workers  # a CPU machine
        need = workers * per_worker
        if need > len(gpus):
            shared = ",".join("+".join(gpus[:per_worker]) for _ in range(workers))
            raise ConfigError(
                f"sweep.devices: {workers} workers x {per_worker} GPUs but {len(gpus)} "
                f"visible GPUs ({','.join(gpus)}); use fewer workers, or list the devices "
                f"to share cards on purpose (e.g. sweep.devices={shared})"
            )
        return [",".join(gpus[i * per_worker : (i + 1) * per_worker]) for i in range(workers)]
    groups = [g.strip() for g in spec.split(",")]
    ids = [d.strip() for g in groups for d in g.split("+")]
    if not all(ids):
        raise ConfigError(
            f"sweep.devices: {spec!r} is not auto, cpu or GPU ids like 0,1 (0+1,2+3: two "
            f"GPUs per worker)"
        )
    unknown = sorted(set(ids) - set(gpus))
    if unknown:
        raise ConfigError(
            f"sweep.devices: GPU {','.join(unknown)} is not visible here "
            f"(visible: {','.join(gpus) or 'none'})"
        )
    if len(groups) < workers:
        raise ConfigError(
            f"sweep.devices: {len(groups)} devices listed ({spec}) for {workers} workers; "
            f"list one per worker"
        )
    bad = [g for g in groups[:workers] if len(g.split("+")) != per_worker]
    if bad:
        raise ConfigError(
            f"sweep.devices: sweep.nproc={per_worker} needs {per_worker} GPUs per worker, "
            f"joined with + (e.g. 0+1,2+3); got {bad[0]}"
        )
    return [g.replace("+", ",") for g in groups[:workers]]


def device_env(device: str | None) -> dict[str, str]:
    """The environment of a worker given ``device`` (see :func:`worker_devices`)."""
    import os

    env = os.environ.copy()
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    return env


def run_quietly(config, overrides: list[str], run_dir: str) -> dict:
    """One run, idempotent: a finished run is read back, an interrupted one resumed.
    Returns its summary."""
    import io

    from rich.console import Console

    from rsexp.experiment import run_or_resume

    cfg = load_config(config, overrides)
    return run_or_resume(cfg, run_dir, console=Console(file=io.StringIO())).summary


def _job_main(
    config, overrides: list[str], run_dir: str, device: str | None = None, report=None
) -> None:
    """A job process: its own session (a terminal's Ctrl-C reaches the parent only, which
    passes it on once), gone with the parent (PDEATHSIG), on its own GPU (``device``, set
    before anything touches CUDA); the run's folder is its result. A failure's reason is
    sent on ``report`` (one end of a pipe), also when it came before the run folder."""
    import os

    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    from rsexp.experiment.interrupts import Interrupted, die_with_parent

    os.setsid()
    die_with_parent()
    try:
        run_quietly(config, overrides, run_dir)
    except Interrupted:
        raise SystemExit(130) from None
    except BaseException as e:  # reported to the parent, then raised as it was
        if report is not None:
            report.send(f"{type(e).__name__}: {e}")
        raise


def run_jobs(jobs: dict, workers: int, on_done, devices: list[str | None] | None = None) -> dict:
    """Run ``jobs`` (``{key: (config, overrides, run_dir)}``), each in a fresh spawned
    process (never forked after torch ran), ``workers`` at a time; ``on_done(key,
    summary)`` as each finishes. Returns ``{key: summary}``. ``devices`` (one per
    worker slot, :func:`worker_devices`): a job runs on the device of the slot it took,
    so two jobs never share a GPU unless the list says so.

    One process per run and no shared queue: a Ctrl-C (``KeyboardInterrupt`` here) is
    passed on once to each running job, whose run checkpoints and is marked KILLED; the
    jobs are waited for and the interrupt raised again, so the same command continues
    from those checkpoints. A failed run raises :class:`JobFailed` after the others in
    progress finish.
    """
    import multiprocessing
    import os
    import signal
    import time

    from rsexp.experiment.rundir import RunDir

    ctx = multiprocessing.get_context("spawn")
    workers = max(1, workers)
    devices = devices or [None] * workers
    todo, running, results, failed, reasons = list(jobs), {}, {}, [], {}
    free, slot_of = list(range(workers)), {}
    try:
        while todo or running:
            while todo and free and not failed:
                key, slot = todo.pop(0), free.pop(0)
                receive, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(
                    target=_job_main, args=(*jobs[key], devices[slot], send), daemon=False
                )
                proc.start()
                send.close()  # the child holds its end
                running[key], slot_of[key], reasons[key] = proc, slot, receive
            for key, proc in list(running.items()):
                if proc.is_alive():
                    continue
                proc.join()
                del running[key]
                free.append(slot_of.pop(key))
                receive = reasons.pop(key)
                try:  # the child's reason, if it sent one before closing its end
                    sent = receive.recv() if receive.poll() else None
                except EOFError:
                    sent = None
                receive.close()
                run_dir = RunDir(jobs[key][2])
                summary = run_dir.summary() or {}
                if proc.exitcode != 0 or summary.get("status") != "finished":
                    why = (
                        sent or summary.get("error") or f"its process exited with {proc.exitcode}"
                    )
                    failed.append(f"{run_dir.path}: {why}")
                    continue
                results[key] = summary
                on_done(key, summary)
            if failed and not running:
                raise JobFailed("runs failed:\n  " + "\n  ".join(failed))
            time.sleep(0.2)
    except KeyboardInterrupt:
        for proc in running.values():
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGINT)
        for proc in running.values():
            proc.join()
        raise
    return results
