"""The writer interface every tracking backend implements."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from rsexp.errors import TrackingError  # noqa: F401 (raised here)


class RunStatus(str, Enum):
    """How a run ended: one word everywhere (``summary.json``, the MLflow run's
    ``status`` tag, the W&B run's ``status`` summary field, the tables).

    - ``finished``: every epoch trained; the only status tables read.
    - ``stopped``: ended early on purpose and checkpointed (``--until-epoch``, a pruned
      sweep trial); ``rsexp resume`` continues it.
    - ``killed``: Ctrl-C / SIGTERM, checkpointed; ``rsexp resume`` continues it.
    - ``failed``: an error, named in ``summary.json`` (``error``) and the trackers.
    """

    FINISHED = "finished"
    STOPPED = "stopped"
    KILLED = "killed"
    FAILED = "failed"

    @property
    def mlflow(self) -> str:
        """MLflow's own run status (it has no "stopped": a stopped run ended early on
        purpose and can be continued, as a killed one; its ``status`` tag tells them
        apart)."""
        return {"finished": "FINISHED", "failed": "FAILED"}.get(self.value, "KILLED")

    def __str__(self) -> str:
        return self.value

    @classmethod
    def _missing_(cls, value):
        # MLflow's spelling ("FINISHED", "KILLED") names the same outcomes
        if isinstance(value, str):
            for member in cls:
                if member.value == value.lower():
                    return member
        return None


@dataclass
class RunInfo:
    """What a writer needs to start or reattach a run.

    ``ref`` is what the writer returned from :meth:`Writer.start` last time (its own run
    id), kept in the run folder's ``trackers.json``; ``None`` for a new run.
    """

    run_dir: Path
    name: str
    experiment: str
    tags: dict[str, str] = field(default_factory=dict)
    ref: str | None = None


class Writer(ABC):
    """One tracking backend. Contract:

    - :meth:`start` creates a run, or reattaches the run ``info.ref`` names (marking it
      running again), and returns the reference to store for a later reattach.
    - :meth:`logged_epochs` tells which epochs (steps) this backend already holds, so a
      resume logs each missing epoch once and no epoch twice.
    - Metrics and images are logged with ``step = epoch``; :meth:`finish` sets the final
      status, a :class:`RunStatus`, in the backend's own terms and as the same word,
      with the reason of a run that did not finish.
    - Failures raise :class:`TrackingError` (a connection error included: the tracker
      retries it and keeps training going); a writer never swallows them.

    Optional abilities have defaults here, so callers never probe with ``hasattr``:
    :meth:`logged_image_steps` (images already held; default: none known, so a resume
    re-logs them), :meth:`reconnect` (after an outage), :meth:`ledger` /
    :meth:`restore` (what the writer keeps in the run folder's ``trackers.json`` besides
    its run id, e.g. the epochs an offline W&B run holds, since that run cannot be
    asked).
    """

    name: str = ""

    @abstractmethod
    def start(self, info: RunInfo) -> str | None: ...

    @abstractmethod
    def logged_epochs(self) -> set[int]: ...

    @abstractmethod
    def log_params(self, params: dict[str, str]) -> None: ...

    @abstractmethod
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    @abstractmethod
    def log_image(self, key: str, image: np.ndarray, step: int, caption: str = "") -> None: ...

    @abstractmethod
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...

    @abstractmethod
    def finish(self, status: RunStatus, reason: str = "") -> None: ...

    def logged_image_steps(self) -> set[tuple[str, int]]:
        return set()

    def flush_images(self, step: int) -> None:  # noqa: B027  (optional)
        """Send images logged for ``step`` that wait for that step's metrics (W&B logs
        an epoch's images with its metrics); called for images of a step without any
        (the attention before training, step 0)."""

    def reconnect(self) -> None:
        """Check that a backend that stopped answering answers again (raise
        :class:`TrackingError` if not) and restart what the outage stopped."""
        self.logged_epochs()

    def ledger(self) -> dict:
        return {}

    def restore(self, entry: dict) -> None:  # noqa: B027  (optional: nothing to restore)
        """Take back what :meth:`ledger` returned last time (``{}`` for a new run)."""


_KEY_OK = re.compile(r"[^A-Za-z0-9_\-./ ]")


def safe_key(key: str) -> str:
    """A metric / image key every backend accepts: MLflow allows only alphanumerics,
    ``_ - . /`` and spaces, so anything else (the ``@`` of Desktop Assembly clip ids,
    ``:`` ...) becomes ``_``. Applied in one place, by the tracker, for every backend."""
    return _KEY_OK.sub("_", key)
