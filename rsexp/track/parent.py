"""The sweep's parent run in MLflow: trials and confirmation runs are its children."""

from __future__ import annotations

from pathlib import Path

from rsexp.track.base import RunInfo, RunStatus


def _writer(track_cfg, runs_dir):
    from rsexp.track.mlflow_writer import MlflowWriter

    m = track_cfg.mlflow
    return MlflowWriter(m.tracking_uri, m.experiment, runs_dir)


def open_parent_run(
    track_cfg, runs_dir, name: str, experiment: str, tags: dict[str, str]
) -> str | None:
    """Start the parent run when MLflow is among the backends; returns its id (None
    without MLflow). The run stays RUNNING until :func:`finish_parent_run`."""
    if "mlflow" not in track_cfg.backends:
        return None
    writer = _writer(track_cfg, runs_dir)
    return writer.start(RunInfo(Path("."), name, experiment, tags))


def finish_parent_run(
    track_cfg,
    runs_dir,
    ref: str | None,
    experiment: str,
    *,
    params: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    files: list[Path] = (),
    status: RunStatus = RunStatus.FINISHED,
) -> None:
    """Attach the sweep's outcome (best knobs, best value, tables) and close the run."""
    if not ref:
        return
    writer = _writer(track_cfg, runs_dir)
    writer.start(RunInfo(Path("."), "", experiment, {}, ref))
    if params:
        writer.log_params(params)
    if metrics:
        writer.log_metrics(metrics, 0)
    for f in files:
        writer.log_artifact(f, "reports")
    writer.finish(status)
