"""MLflow backend: the client API with explicit run ids (never the global active run),
so parallel trials in one process or many cannot write into each other's runs."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from rsexp.track.base import RunInfo, RunStatus, TrackingError, Writer

# MLflow 3 rejects the ./mlruns file store; the embedded default is a SQLite file.
EMBEDDED_DB = "mlflow.db"
EMBEDDED_ARTIFACTS = "mlflow-artifacts"
STEP_KEY = "epoch"  # logged with every epoch's batch: its history says which epochs exist


def embedded_uri(runs_dir: str | Path) -> str:
    return f"sqlite:///{Path(runs_dir).resolve() / EMBEDDED_DB}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before training, when an HTTP tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read()
    except (urllib.error.URLError, OSError) as e:
        raise TrackingError(
            f"MLflow tracking server {uri} is not reachable ({getattr(e, 'reason', e)}); "
            f"start it or set track.mlflow.tracking_uri, or drop mlflow from track.backends"
        ) from e


EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
# MLflow's client retries a failed request 7 times with a doubling backoff (minutes);
# the tracker retries with its own backoff and keeps training going, so one call is
# kept short. A user's own setting of these wins.
HTTP_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def _as_tracking_error(method):
    """A failed call (the server gone, a dropped connection, a locked store) raised as
    :class:`TrackingError`, which the tracker retries; anything else is a bug."""
    import functools

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        import requests
        from mlflow.exceptions import MlflowException

        try:
            return method(self, *args, **kwargs)
        except (MlflowException, requests.RequestException, OSError) as e:
            message = getattr(e, "message", None) or str(e)
            raise TrackingError(f"MLflow at {self.uri}: {message[:300]}") from e

    return call


def image_step(path: str) -> tuple[str, int] | None:
    """(key, step) of a step-indexed image MLflow 3 stored at ``path``
    (``images/<key with / as ~>+step+<n>+timestamp+...png``); None for other files."""
    parts = Path(path).name.split("+")
    if path.endswith(".png") and len(parts) > 3 and parts[1] == "step":
        return parts[0].replace("~", "/"), int(parts[2])
    return None


def source_tags() -> dict[str, str]:
    """The tags MLflow's UI shows as the run's Source and User: the git commit of the
    rsexp checkout, the command (``rsexp train``), the user."""
    import getpass
    import sys

    from rsexp.track.provenance import git_state

    commit, _ = git_state(Path(__file__).resolve().parent)
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    name = f"rsexp {args[0]}" if prog in ("rsexp", "cli.py") and args else prog
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = str(os.getuid())
    tags = {"mlflow.source.name": name, "mlflow.source.type": "LOCAL", "mlflow.user": user}
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    return tags


class MlflowWriter(Writer):
    name = "mlflow"

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        runs_dir: str | Path,
        system_metrics_s: float = 0.0,
    ):
        self.uri = tracking_uri or embedded_uri(runs_dir)
        self.experiment = experiment
        for key, value in HTTP_SETTINGS.items():
            os.environ.setdefault(key, value)
        # CPU / memory / disk / network (and GPU with nvidia-ml-py) every this many
        # seconds as the run's system/* metrics; 0 = off
        self.system_metrics_s = system_metrics_s
        self.monitor = None
        self.artifact_root = None
        if not tracking_uri:  # embedded store: artifacts beside it under runs/
            Path(runs_dir).mkdir(parents=True, exist_ok=True)
            self.artifact_root = (Path(runs_dir).resolve() / EMBEDDED_ARTIFACTS).as_uri()
        elif tracking_uri.startswith("sqlite:///"):  # beside the database, not in ./mlruns
            db = Path(tracking_uri.removeprefix("sqlite:///"))
            self.artifact_root = (db.resolve().parent / EMBEDDED_ARTIFACTS).as_uri()

    def start(self, info: RunInfo) -> str:
        check_reachable(self.uri)
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # table-creation chatter
        name = self.experiment or info.experiment
        try:
            # Several processes (sweep workers, parallel runs) may open a new embedded
            # store at once: MLflow's table creation and create_experiment race, so the
            # first touch of the store is serialised with a lock file beside it.
            with self._store_lock(), warnings.catch_warnings():
                # creating the store runs alembic migrations, which warn about unnamed
                # CHECK constraints in MLflow's own schema
                warnings.filterwarnings("ignore", module="alembic")
                self.client = MlflowClient(tracking_uri=self.uri)
                exp = self.client.get_experiment_by_name(name)
                exp_id = (
                    exp.experiment_id
                    if exp
                    else self.client.create_experiment(name, artifact_location=self.artifact_root)
                )
                if exp is None or exp.tags.get(EXPERIMENT_KIND) != MODEL_TRAINING:
                    # MLflow 3.17's UI opens an experiment on its GenAI pages (traces,
                    # judges) unless the experiment says it is model training
                    self.client.set_experiment_tag(exp_id, EXPERIMENT_KIND, MODEL_TRAINING)
            if info.ref:
                self.run_id = info.ref
                self.client.get_run(self.run_id)  # raises if it is gone
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                tags = {**source_tags(), **info.tags}
                run = self.client.create_run(exp_id, run_name=info.name, tags=tags)
                self.run_id = run.info.run_id
        except MlflowException as e:
            raise TrackingError(f"MLflow at {self.uri}: {e.message}") from e
        if self.system_metrics_s > 0:
            self.monitor = self._monitor(resume=bool(info.ref))
        return self.run_id

    @contextlib.contextmanager
    def _store_lock(self):
        if not self.uri.startswith("sqlite:///"):
            yield
            return
        lock = Path(self.uri.removeprefix("sqlite:///") + ".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @_as_tracking_error
    def logged_epochs(self) -> set[int]:
        return {int(m.step) for m in self.client.get_metric_history(self.run_id, STEP_KEY)}

    @_as_tracking_error
    def logged_image_steps(self) -> set[tuple[str, int]]:
        """(key, step) of the step-indexed images already in the run.

        MLflow 3 stores them as ``images/<key with / as ~>+step+<n>+timestamp+...png``.
        """
        files = self.client.list_artifacts(self.run_id, "images")
        return {found for f in files if (found := image_step(f.path)) is not None}

    @_as_tracking_error
    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        new = [Param(k, v) for k, v in params.items() if k not in existing]
        for i in range(0, len(new), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=new[i : i + 100])

    @_as_tracking_error
    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        batch = [Metric(k, float(v), ts, step) for k, v in metrics.items() if k != STEP_KEY]
        batch.append(Metric(STEP_KEY, float(step), ts, step))  # last: marks the epoch done
        self.client.log_batch(self.run_id, metrics=batch)

    @_as_tracking_error
    def log_image(self, key: str, image: np.ndarray, step: int, caption: str = "") -> None:
        img = Image.fromarray(image)
        # MLflow saves the PNG with Pillow's default zlib level (6), the bulk of the
        # per-epoch tracking cost; Pillow >= 12 takes save options from the image itself.
        img.encoderinfo = {"compress_level": 1}
        self.client.log_image(self.run_id, img, key=key, step=step)

    @_as_tracking_error
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    @_as_tracking_error
    def reconnect(self) -> None:
        """After an outage: the server answers again, and the system metrics, whose
        thread stopped on the first failed write, start again (continuing their steps)."""
        self.client.get_run(self.run_id)
        if self.monitor is not None:
            self.monitor.finish()  # its thread returned at the first failed write
            self.monitor = self._monitor(resume=True)

    def _monitor(self, resume: bool):
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(
            self.run_id,
            sampling_interval=self.system_metrics_s,
            resume_logging=resume,  # a resumed run continues its steps
            tracking_uri=self.uri,
        )
        monitor.start()
        return monitor

    @_as_tracking_error
    def finish(self, status: RunStatus, reason: str = "") -> None:
        if self.monitor is not None:
            self.monitor.finish()
            self.monitor = None
        status = RunStatus(status)
        self.client.set_tag(self.run_id, "status", status.value)
        if reason:
            self.client.set_tag(self.run_id, "error", reason[:4000])
        self.client.set_terminated(self.run_id, status.mlflow)
