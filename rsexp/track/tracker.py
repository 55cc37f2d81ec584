"""The tracker: the local run folder first, then every configured backend as a mirror.

Backends are imported lazily: choosing ``mlflow`` never imports wandb, and vice versa.

The run folder is the truth: each epoch's record is appended to ``metrics.jsonl`` in
the caller's thread before any backend sees it. A backend is a mirror: a call that
fails (:class:`TrackingError`: a dropped connection, a server restarting) is retried
with backoff; a backend that stays unreachable is marked down, said so once on the
console, and training goes on. Each later epoch tries it again (at most every
``track.retry_s`` seconds, doubling to a minute); once it answers, it is given the
epochs it lacks, each exactly once (it is asked which epochs it holds, so a write that
reached it before the connection broke is not sent twice). At the end of the run it is
tried for up to ``track.retry_s`` more; still down, the run ends as it would have, and
``rsexp resume <run>`` sends what is missing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from rich.markup import escape

from rsexp.core.registry import Registry
from rsexp.fileio import write_text
from rsexp.track.base import RunInfo, RunStatus, TrackingError, Writer, safe_key
from rsexp.track.local import LocalWriter, overlay_path

TRACKERS_FILE = "trackers.json"
FIRST_RETRY_S, LAST_RETRY_S = 2.0, 60.0  # a down backend is tried again after these, doubling


@dataclass(frozen=True)
class TrackerSpec:
    """A tracking backend: ``build(track_cfg, runs_dir, console) -> Writer`` (the
    :class:`~rsexp.track.base.Writer` contract, which ``tests/test_writer_contract.py``
    runs every registered one through)."""

    name: str
    build: Callable[..., Writer]
    origin: str = "rsexp"


TRACKERS: Registry[TrackerSpec] = Registry("tracker", "track.backends")


def register_tracker(name: str):
    """Register a backend's factory under ``name`` (what ``track.backends`` lists)."""

    def add(factory: Callable[..., Writer]):
        TRACKERS.add(name, TrackerSpec(name, factory, factory.__module__.split(".")[0]))
        return factory

    return add


@register_tracker("local")
def _local(track_cfg, runs_dir, console=None) -> Writer:
    return LocalWriter()


@register_tracker("mlflow")
def _mlflow(track_cfg, runs_dir, console=None) -> Writer:
    from rsexp.track.mlflow_writer import MlflowWriter  # lazily: no mlflow unless asked

    m = track_cfg.mlflow
    return MlflowWriter(m.tracking_uri, m.experiment, runs_dir, m.system_metrics_s)


@register_tracker("wandb")
def _wandb(track_cfg, runs_dir, console=None) -> Writer:
    from rsexp.track.wandb_writer import WandbWriter  # lazily: no wandb unless asked

    w = track_cfg.wandb
    return WandbWriter(w.mode, w.project, w.entity, w.group, console)


def build_writer(name: str, track_cfg, runs_dir: str | Path, console=None) -> Writer:
    """A backend by name; an unknown name raises with the valid ones."""
    return TRACKERS.get(name).build(track_cfg, runs_dir, console)


class _Down:
    """A backend that stopped answering: since when, why, when to try it next."""

    def __init__(self, reason: str, wait: float):
        self.reason, self.wait = reason, wait
        self.next_try = time.monotonic() + wait


class Tracker:
    """The local writer, then the configured backends (see the module docstring).

    The run folder's ``trackers.json`` keeps each backend's run id (so a resume reattaches
    the same tracked run) and, for backends that cannot be asked (offline W&B), the
    epochs they already hold.

    Backends are written by one background thread (image encoding and uploads overlap
    the next epoch's training; order is kept); :meth:`flush` waits for it. Epochs still
    queued when the process is killed are given to the backends by the resume
    (:meth:`sync`).
    """

    def __init__(
        self,
        track_cfg,
        run_dir: Path,
        runs_dir: str | Path,
        console=None,
        attempts: int = 3,
    ):
        self.run_dir = Path(run_dir)
        self.console = console
        self.local = LocalWriter()
        names = [b for b in dict.fromkeys(track_cfg.backends) if b != "local"]
        self.writers: list[Writer] = [self.local] + [
            build_writer(n, track_cfg, runs_dir, console) for n in names
        ]
        self.retry_s = float(getattr(track_cfg, "retry_s", 30.0))
        self.attempts = attempts  # tries of one call before a backend is marked down
        self.ledger_path = self.run_dir / TRACKERS_FILE
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rsexp-track")
        self._pending: list[Future] = []
        self.down: dict[str, _Down] = {}
        self.history: list[dict] = []  # every epoch of the run, as the run folder has it
        self.params: dict[str, str] = {}
        # epochs each backend is known to hold: held at the resume (a resume from an
        # older checkpoint, previous.pt, re-trains epochs a backend already has: they are
        # not logged twice) or sent since
        self.held: dict[str, set[int]] = {}

    @property
    def backends(self) -> list[Writer]:
        return self.writers[1:]

    def flush(self) -> None:
        """Wait for the queued backend writes (they never raise: a failure marks the
        backend down)."""
        pending, self._pending = self._pending, []
        for fut in pending:
            fut.result()

    def _say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)

    # -- ledger
    def _read_ledger(self) -> dict:
        if self.ledger_path.is_file():
            return json.loads(self.ledger_path.read_text())
        return {}

    def _write_ledger(self) -> None:
        ledger = {}
        for w in self.backends:
            ledger[w.name] = {"run_id": self.refs.get(w.name), **w.ledger()}
        write_text(self.ledger_path, json.dumps(ledger, indent=1))

    # -- one backend call: retried, then the backend is marked down
    def _call(self, w: Writer, what: str, fn) -> bool:
        """``fn()`` on backend ``w``: True once it worked. A :class:`TrackingError` is
        retried ``attempts`` times with backoff, then marks ``w`` down (said once) and
        returns False; a down backend is not called until :meth:`_revive` brings it back.
        Any other exception is a bug and propagates."""
        if w.name in self.down:
            return False
        delay = 1.0
        for attempt in range(1, self.attempts + 1):
            try:
                fn()
                return True
            except TrackingError as e:
                error = e
            if attempt < self.attempts:
                time.sleep(delay)
                delay *= 2
        self.down[w.name] = _Down(f"{what}: {error}", FIRST_RETRY_S)
        self._say(
            f"[yellow]{w.name} unreachable[/] ({escape(str(error))}); training goes on, the "
            f"run folder keeps every epoch, and {w.name} is given the epochs it lacks "
            f"when it answers again"
        )
        return False

    def _revive(self, w: Writer, force: bool = False) -> bool:
        """Try a down backend again (when its wait is over, or ``force``): it answers
        -> it is given what it lacks; True when it is up."""
        down = self.down.get(w.name)
        if down is None:
            return True
        if not force and time.monotonic() < down.next_try:
            return False
        try:
            w.reconnect()
            filled = self._fill(w)
        except TrackingError as e:
            down.reason, down.wait = str(e), min(LAST_RETRY_S, down.wait * 2)
            down.next_try = time.monotonic() + down.wait
            return False
        del self.down[w.name]
        self._say(
            f"[green]{w.name} is back[/]"
            + (f": given epochs {filled} it lacked" if filled else "")
        )
        return True

    def _fill(self, w: Writer) -> list[int]:
        """Give ``w`` the params and every epoch of :attr:`history` it lacks (with their
        overlay images, read back from ``overlays/``). Raises :class:`TrackingError`."""
        if self.params:
            w.log_params(self.params)
        have = w.logged_epochs()
        have_images = w.logged_image_steps()
        keys = self._overlay_keys()
        held = self.held.setdefault(w.name, set())
        held |= have
        missing = [h for h in self.history if int(h["epoch"]) not in have]
        for rec in missing:
            step = int(rec["epoch"])
            for key in keys:
                path = overlay_path(self.run_dir, key, step)
                if path.is_file() and (safe_key(key), step) not in have_images:
                    image = np.asarray(Image.open(path).convert("RGB"))
                    w.log_image(safe_key(key), image, step)
            w.log_metrics(_safe_keys({k: v for k, v in rec.items() if k != "epoch"}), step)
            held.add(step)
        return [int(h["epoch"]) for h in missing]

    # -- lifecycle
    def start(self, name: str, experiment: str, tags: dict[str, str]) -> None:
        """Start (or reattach, from ``trackers.json``) every backend's run. Here an
        unreachable backend is an error: nothing has been trained yet."""
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
        self.params = dict(params)
        self.local.log_params(params)
        for w in self.backends:
            self._call(w, "params", lambda w=w: w.log_params(params))

    def has_images(self, step: int) -> bool:
        """The run folder holds overlays of ``step`` already."""
        return any(s == step for _, s in self.local.logged_image_steps())

    def log_images(self, images: dict[str, tuple[np.ndarray, str]], step: int) -> None:
        """Images of a step without metrics (the attention before training): the run
        folder, then every backend."""
        if not images:
            return
        for key, (img, caption) in images.items():
            self.local.log_image(key, img, step, caption)

        def send(w):
            for key, (img, caption) in images.items():
                w.log_image(safe_key(key), img, step, caption)
            w.flush_images(step)

        for w in self.backends:
            self._call(w, f"images of step {step}", lambda w=w: send(w))

    def log_epoch(self, record: dict, images: dict[str, tuple[np.ndarray, str]]) -> None:
        """The epoch into the run folder now; to the backends in the background."""
        step = int(record["epoch"])
        metrics = {k: v for k, v in record.items() if k != "epoch"}
        for key, (img, caption) in images.items():
            self.local.log_image(key, img, step, caption)
        self.local.log_metrics(metrics, step)
        self.history.append(dict(record))
        for fut in [f for f in self._pending if f.done()]:
            self._pending.remove(fut)
            fut.result()
        self._pending.append(self._pool.submit(self._mirror_epoch, dict(record), images))

    def _mirror_epoch(self, record: dict, images: dict[str, tuple[np.ndarray, str]]) -> None:
        """Images first, then the metrics (whose ``epoch`` entry marks the epoch logged)."""
        step = int(record["epoch"])
        metrics = _safe_keys({k: v for k, v in record.items() if k != "epoch"})
        for w in self.backends:
            if w.name in self.down:
                self._revive(w)  # brings it up to date, this epoch included
                continue
            held = self.held.setdefault(w.name, set())
            if step in held:
                continue

            def send(w=w):
                for key, (img, caption) in images.items():
                    w.log_image(safe_key(key), img, step, caption)
                w.log_metrics(metrics, step)

            if self._call(w, f"epoch {step}", send):
                held.add(step)
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
        self.history = [dict(h) for h in history]
        filled: dict[str, list[int]] = {}
        for w in self.backends:
            out: list[int] = []

            def fill(w=w, out=out):
                out[:] = self._fill(w)

            if self._call(w, "the epochs it lacks", fill):
                filled[w.name] = out
        self._write_ledger()
        return filled

    def _overlay_keys(self) -> list[str]:
        root = self.run_dir / "overlays"
        return sorted(f"overlay/{p.name}" for p in root.iterdir()) if root.is_dir() else []

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.flush()
        self.local.log_artifact(path, artifact_path)
        for w in self.backends:
            name = f"file {Path(path).name}"
            self._call(w, name, lambda w=w: w.log_artifact(path, artifact_path))

    def finish(self, status: RunStatus, reason: str = "") -> None:
        """Flush, bring back a backend that was down (trying for ``track.retry_s``), then
        set every backend's final status. One still down is named with what it lacks.
        An error of the run folder's own files (a full disk while writing the ledger)
        is raised after the backends have their status."""
        folder_error = None
        try:
            self.flush()
        except OSError as e:  # the backends still get their status, then it is raised
            folder_error = e
        finally:
            self._pool.shutdown(wait=True)
        deadline = time.monotonic() + self.retry_s
        for w in self.backends:
            while w.name in self.down and not self._revive(w, force=True):
                if time.monotonic() >= deadline:
                    break
                time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
        for w in self.writers:
            if w.name in self.down:
                held = self.held.get(w.name, set())
                lacks = [int(h["epoch"]) for h in self.history if int(h["epoch"]) not in held]
                self._say(
                    f"[yellow]{w.name} still unreachable[/] "
                    f"({escape(self.down[w.name].reason)}): it lacks epochs {lacks}, which "
                    f"are in {escape(str(self.run_dir))}/metrics.jsonl; `rsexp resume "
                    f"{escape(str(self.run_dir))}` gives them to it"
                )
                continue
            self._call(w, "final status", lambda w=w: w.finish(status, reason))
        if folder_error is not None:
            raise folder_error
        self._write_ledger()


def _safe_keys(metrics: dict[str, float]) -> dict[str, float]:
    return {safe_key(k): v for k, v in metrics.items()}
