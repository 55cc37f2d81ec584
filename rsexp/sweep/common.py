"""Names the sweep's driver, workers and confirmation stage share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rsexp.config import Config, with_values
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


def tagged(cfg: Config, study_name: str, stage: str, parent: str | None, **extra) -> Config:
    """``cfg`` tagged as a trial or confirmation run of the sweep: sweep, stage
    (``trial`` | ``confirm``), the MLflow parent run, the W&B group."""
    tags = {**cfg.track.tags, "sweep": study_name, "stage": stage, **extra}
    if parent:
        tags["mlflow.parentRunId"] = parent
    return with_values(cfg, {"track.tags": tags, "track.wandb.group": study_name})
