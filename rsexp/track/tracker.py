"""The tracker: every call fanned out to the local run folder and the configured backends.

Backends are imported lazily: choosing ``mlflow`` never imports wandb, and vice versa.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from rsexp.track.base import RunInfo, RunStatus, TrackingError, Writer, safe_key
from rsexp.track.local import LocalWriter, overlay_path

TRACKERS_FILE = "trackers.json"


def build_writer(name: str, track_cfg, runs_dir: str | Path, console=None) -> Writer:
    """A backend by name; an unknown name raises with the valid ones."""
    if name == "local":
        return LocalWriter()
    if name == "mlflow":
        from rsexp.track.mlflow_writer import MlflowWriter

        m = track_cfg.mlflow
        return MlflowWriter(m.tracking_uri, m.experiment, runs_dir, m.system_metrics_s)
    if name == "wandb":
        from rsexp.track.wandb_writer import WandbWriter

        w = track_cfg.wandb
        return WandbWriter(w.mode, w.project, w.entity, w.group, console)
    raise TrackingError(f"unknown tracking backend {name!r}; valid: local, mlflow, wandb")


class Tracker:
    """Fans every call out to the local writer and the configured backends.

    The run folder's ``trackers.json`` keeps each backend's run id (so a resume reattaches
    the same tracked run) and, for backends that cannot be asked (offline W&B), the
    epochs they already hold.

    :meth:`log_epoch` hands the epoch to one background thread (image encoding and
    uploads overlap the next epoch's training; order is kept). A failure there is raised
    at the next call; :meth:`flush` waits for everything queued, and every other method
    flushes first. Epochs still queued when the process is killed are given to the
    backends by the resume (:meth:`sync`).
    """

    def __init__(self, track_cfg, run_dir: Path, runs_dir: str | Path, console=None):
        self.run_dir = Path(run_dir)
        self.local = LocalWriter()
        names = [b for b in dict.fromkeys(track_cfg.backends) if b != "local"]
        self.writers: list[Writer] = [self.local] + [
            build_writer(n, track_cfg, runs_dir, console) for n in names
        ]
        self.ledger_path = self.run_dir / TRACKERS_FILE
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rsexp-track")
        # epochs each backend held at the resume: a resume from an older checkpoint
        # (previous.pt) re-trains epochs a backend already has; they are not logged twice
        self._held: dict[str, set[int]] = {}
        self._pending: list[Future] = []

    def flush(self) -> None:
        """Wait for the queued epochs; re-raise the first failure."""
        pending, self._pending = self._pending, []
        for fut in pending:
            fut.result()

    # -- ledger
    def _read_ledger(self) -> dict:
        if self.ledger_path.is_file():
            return json.loads(self.ledger_path.read_text())
        return {}

    def _write_ledger(self) -> None:
        ledger = {}
        for w in self.writers[1:]:
            ledger[w.name] = {"run_id": self.refs.get(w.name), **w.ledger()}
        tmp = self.ledger_path.with_name(f".{TRACKERS_FILE}.tmp")
        tmp.write_text(json.dumps(ledger, indent=1))
        os.replace(tmp, self.ledger_path)

    # -- lifecycle
    def start(self, name: str, experiment: str, tags: dict[str, str]) -> None:
        """Start (or reattach, from ``trackers.json``) every backend's run."""
        ledger = self._read_ledger()
        self.refs: dict[str, str | None] = {}
        for w in self.writers:
            prev = ledger.get(w.name, {})
            ref = w.start(RunInfo(self.run_dir, name, experiment, tags, prev.get("run_id")))
            w.restore(prev)
            self.refs[w.name] = ref
        self._write_ledger()

    @property
    def run_ids(self) -> dict[str, str]:
        return {k: v for k, v in self.refs.items() if v}

    def log_params(self, params: dict[str, str]) -> None:
        self.flush()
        for w in self.writers:
            w.log_params(params)

    def log_epoch(self, record: dict, images: dict[str, tuple[np.ndarray, str]]) -> None:
        """Queue one finished epoch (see the class docstring)."""
        for fut in [f for f in self._pending if f.done()]:
            self._pending.remove(fut)
            fut.result()  # surface a failed earlier epoch now
        self._pending.append(self._pool.submit(self._log_epoch_now, dict(record), images))

    def _log_epoch_now(self, record: dict, images: dict[str, tuple[np.ndarray, str]]) -> None:
        """Images first, then the metrics (whose ``epoch`` entry marks the epoch logged)."""
        step = int(record["epoch"])
        metrics = {k: v for k, v in record.items() if k != "epoch"}
        for w in self.writers:
            if step in self._held.get(w.name, ()):
                continue
            for key, (img, caption) in images.items():
                w.log_image(key if w is self.local else safe_key(key), img, step, caption)
            w.log_metrics(metrics if w is self.local else _safe_keys(metrics), step)
        self._write_ledger()

    def sync(self, history: list[dict]) -> dict[str, list[int]]:
        """Resume: make every backend hold each epoch of ``history`` exactly once.

        The local log is rewritten from the checkpoint's history; each backend gets the
        epochs it lacks (with their overlay images, read back from ``overlays/``).

        Returns:
            ``{backend: [epochs filled in]}``.
        """
        self.flush()
        self.local.rewrite(history)
        filled: dict[str, list[int]] = {}
        keys = self._overlay_keys()
        for w in self.writers[1:]:
            have = w.logged_epochs()
            self._held[w.name] = have
            have_images = w.logged_image_steps()
            missing = [h for h in history if int(h["epoch"]) not in have]
            for rec in missing:
                step = int(rec["epoch"])
                for key in keys:
                    path = overlay_path(self.run_dir, key, step)
                    if path.is_file() and (safe_key(key), step) not in have_images:
                        image = np.asarray(Image.open(path).convert("RGB"))
                        w.log_image(safe_key(key), image, step)
                w.log_metrics(_safe_keys({k: v for k, v in rec.items() if k != "epoch"}), step)
            filled[w.name] = [int(h["epoch"]) for h in missing]
        self._write_ledger()
        return filled

    def _overlay_keys(self) -> list[str]:
        root = self.run_dir / "overlays"
        return sorted(f"overlay/{p.name}" for p in root.iterdir()) if root.is_dir() else []

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.flush()
        for w in self.writers:
            w.log_artifact(path, artifact_path)

    def finish(self, status: RunStatus) -> None:
        """Flush, then set every backend's final status (also when a queued epoch failed)."""
        try:
            self.flush()
        finally:
            for w in self.writers:
                w.finish(status)
            self._pool.shutdown(wait=True)


def _safe_keys(metrics: dict[str, float]) -> dict[str, float]:
    return {safe_key(k): v for k, v in metrics.items()}
