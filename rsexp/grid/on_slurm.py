"""``rsexp train --launcher slurm`` and ``rsexp paper --launcher slurm``: the same runs,
each a Slurm job (:class:`rsexp.slurm.SlurmJobs`, the sweep's workers' launcher) that
runs :func:`rsexp.grid.grid.run_job` on the folder it was given; ``sweep.slurm.*`` says
what each job asks for. The folder holds the typed config before the job starts, so a
job that is cancelled or pre-empted leaves a checkpointed run the same command (or
``rsexp resume``) continues."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from rsexp.config import Config
from rsexp.errors import ConfigError, Interrupted
from rsexp.grid.grid import finished
from rsexp.jobs import Spec
from rsexp.slurm import SlurmJobs, check_cluster


def slurm_runner(cfg: Config, folder: Path, name: str):
    """A runner for :func:`rsexp.grid.grid.run_grid`: every run one task of a job array,
    submitit's files and the jobs' logs under ``folder``."""
    check_cluster()
    return SlurmJobs(cfg.sweep.slurm, folder, name).run_all


def train_on_slurm(
    cfg: Config, run_dir: str | Path | None, until_epoch: int | None, console: Console
) -> dict:
    """Train ``cfg`` as one Slurm job in a new run folder (``runs/<experiment>/<run id>``
    by default); wait for it and return its summary. Ctrl-C cancels the job (its run
    checkpoints) and says how to continue."""
    from rsexp.experiment import RunDir, new_run_id
    from rsexp.experiment.build import preflight

    if until_epoch is not None:
        raise ConfigError(
            "--until-epoch: not with --launcher slurm (a job trains the whole run; a "
            "cancelled one is checkpointed and continues with rsexp resume)"
        )
    preflight(cfg)  # a typo or a missing dataset: before any folder or job
    check_cluster()
    runs = Path(cfg.train.runs_dir) / cfg.experiment
    rd = RunDir(Path(run_dir) if run_dir else runs / new_run_id(cfg))
    if rd.has_checkpoint():
        raise FileExistsError(f"{rd.path} already holds a run; use rsexp resume {rd.path}")
    rd.path.mkdir(parents=True, exist_ok=True)
    rd.save_config(cfg)
    jobs = SlurmJobs(cfg.sweep.slurm, runs / "slurm", f"rsexp-{rd.path.name}")
    spec = Spec("rsexp.grid.grid:run_job", (str(rd.path),), finished(rd.path), label=str(rd.path))
    console.print(f"run {rd.path} as a Slurm job (logs: {jobs.folder})")
    try:
        with console.status("waiting for the Slurm job to end"):
            (summary,) = jobs.run_all({rd.path: spec}, lambda key, result: None).values()
    except KeyboardInterrupt:
        console.print(
            f"[yellow]interrupted[/]: the Slurm job is cancelled and its run checkpointed; "
            f"continue with rsexp resume {escape(str(rd.path))}"
        )
        raise Interrupted("slurm run interrupted") from None
    shown = ", ".join(f"{k} {summary[k]:.2f}" for k in ("test/top1", "val/top1") if k in summary)
    console.print(f"[green]run done[/]: {escape(str(rd.path))} {shown}")
    return summary
