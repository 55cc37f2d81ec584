"""Tracking: the local run folder (always, the source of truth) mirrored to MLflow / W&B.

Backends are imported lazily: choosing ``mlflow`` never imports wandb, and vice versa.
"""

from rsexp.track.base import RunInfo, RunStatus, TrackingError, Writer
from rsexp.track.tracker import TRACKERS, Tracker, TrackerSpec, build_writer, register_tracker

__all__ = [
    "TRACKERS",
    "TrackerSpec",
    "register_tracker",
    "RunInfo",
    "RunStatus",
    "Tracker",
    "TrackingError",
    "Writer",
    "build_writer",
]
