"""Names the sweep's driver, workers and confirmation stage share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rsexp.config import Config, flatten, load_config, to_dict

PARENT_ATTR = "mlflow_parent_run_id"  # study attribute: the sweep's MLflow parent run
STOPPED_ATTR = "stopped"  # study attribute: why the sweep stopped before its budget


class SweepStopped(RuntimeError):
    """The sweep ended without a result to confirm (trials failing the same way, or no
    trial completed); says why and where the logs are."""


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


def run_quietly(config, overrides: list[str], run_dir: str) -> dict:
    """One run in a worker process (confirmation and paper runs), idempotent: a finished
    run is read back, an interrupted one resumed. Returns its summary."""
    import io
    import signal

    from rich.console import Console

    from rsexp.experiment import run_or_resume

    # Ctrl-C (passed on by the parent, see interrupt_pool) stops a run in progress; an
    # idle pool worker ignores it and is ended by the pool's shutdown
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        cfg = load_config(config, overrides)
        return run_or_resume(cfg, run_dir, console=Console(file=io.StringIO())).summary
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def pool_worker_init() -> None:
    """Initializer of the confirmation / paper pool's worker processes: their own
    session (a terminal's Ctrl-C reaches the parent only, which passes it on once, see
    :func:`interrupt_pool`), and gone with the parent (PDEATHSIG)."""
    import os
    import signal

    from rsexp.experiment.interrupts import die_with_parent

    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until a run starts (run_quietly)
    die_with_parent()


def interrupt_pool(futures) -> None:
    """Ctrl-C in the parent of a process pool: cancel the runs not started and pass one
    SIGINT to each worker: a run in progress checkpoints, is marked KILLED and ends its
    job; the pool's shutdown (leaving its ``with`` block) then waits for those jobs and
    ends the workers, so the same command continues from the checkpoints."""
    import multiprocessing
    import os
    import signal

    for fut in futures:
        fut.cancel()
    for p in multiprocessing.active_children():
        os.kill(p.pid, signal.SIGINT)
