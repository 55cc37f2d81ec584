"""The run folder, ``runs/<experiment>/<run_id>/``: one object that knows its files.

``config.yaml`` (the resolved config), ``metrics.jsonl`` (one line per epoch, the
source of truth), ``summary.json``, ``params.json``, ``trackers.json`` (the ids of the
MLflow / W&B runs it mirrors), ``checkpoints/{last,best}.pt``, ``overlays/``,
``figures/``. Training, resume, the sweep and the tables all read runs through it.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import yaml

from rsexp.config import Config, from_dict, load_yaml, to_dict
from rsexp.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rsexp.errors import RunFileError, RunInUse
from rsexp.fileio import disk_full, is_disk_full, write_text
from rsexp.track.local import METRICS_FILE, read_metrics
from rsexp.track.tracker import TRACKERS_FILE


def write_json_atomic(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=1, sort_keys=False))


def _link(src: Path, dst: Path) -> None:
    """``dst`` becomes another name of ``src``'s file, atomically (files are never
    written in place, so the two names stay equal until one is replaced)."""
    tmp = dst.with_name(f".{dst.name}.link")
    tmp.unlink(missing_ok=True)
    os.link(src, tmp)
    os.replace(tmp, dst)


@contextmanager
def folder_lock(path: Path, what: str, wait: float = 0):
    """Hold ``path`` (a lock file) for the block: one owner at a time, across processes
    and machines sharing the file system; released when the block ends or the process
    dies (an OS file lock, never a stale marker). Another owner still holding it after
    ``wait`` seconds: :class:`RunInUse` naming it (pid, host, since when, its command)."""
    import socket
    import sys
    from datetime import datetime, timezone

    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    owner = path.with_name(path.name + ".owner")
    lock = FileLock(path)
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        try:
            info = json.loads(owner.read_text())
            held = (
                f"pid {info['pid']} on {info['host']} since {info['since']}: "
                f"{' '.join(info['command'])[:200]}"
            )
        except (OSError, ValueError, KeyError):
            held = "another process"
        raise RunInUse(
            f"{what} is in use by {held}. One process writes it at a time: wait for that "
            f"one to end (Ctrl-C checkpoints it), or use another folder"
        ) from None
    try:
        since = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        write_json_atomic(
            owner,
            {"pid": os.getpid(), "host": socket.gethostname(), "since": since,
             "command": sys.argv},
        )  # fmt: skip
        yield
    finally:
        lock.release()


class RunDir:
    """One run folder. Cheap to make; reads its files when asked."""

    CONFIG, SUMMARY, PARAMS = "config.yaml", "summary.json", "params.json"
    METRICS, TRACKERS = METRICS_FILE, TRACKERS_FILE

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def find(cls, run: str | Path, runs_dir: str | Path = "runs") -> RunDir:
        """A run folder given its path or its run id (searched under ``runs_dir/*/``)."""
        path = Path(run)
        if path.is_dir():
            rd = cls(path)
            if not rd.config_path.is_file():
                raise FileNotFoundError(
                    f"{path} is a folder but not a run folder: it has no {cls.CONFIG} "
                    f"(a run folder holds {cls.CONFIG}, {cls.METRICS}, checkpoints/)"
                )
            return rd
        matches = sorted(Path(runs_dir).glob(f"*/{run}"))
        matches = [m for m in matches if (m / cls.CONFIG).is_file()]
        if len(matches) == 1:
            return cls(matches[0])
        if not matches:
            raise FileNotFoundError(
                f"no run folder or run id {str(run)!r} (looked in {runs_dir}/*/)"
            )
        raise FileNotFoundError(f"run id {run!r} is ambiguous: {', '.join(map(str, matches))}")

    def lock(self):
        """Hold the folder for a run's life (``.lock``): a second ``rsexp train`` or
        ``resume`` of the same folder, or a second worker on the same trial, is refused
        with :class:`RunInUse` naming the owner."""
        return folder_lock(self.path / ".lock", f"run folder {self.path}")

    # -- files
    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def summary_path(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def previous_checkpoint(self) -> Path:
        return self.checkpoints / "previous.pt"

    def save_last(self, state: dict, best: bool = False) -> None:
        """Write ``last.pt`` atomically, keeping the one it replaces as ``previous.pt``
        (a hard link, so ``last.pt`` is never absent): a resume falls back to it when
        ``last.pt`` is unreadable. ``best``: the state is also the best so far; it is
        written once, as ``best.pt`` first, and ``last.pt`` becomes a second name for
        the same file (a ViT-B state with its optimiser is ~1 GB: one write, not two).
        Best first: if the disk fills between the two, ``last.pt`` still names the
        previous epoch and the resume redoes this one, so ``summary.json`` never names a
        best epoch whose checkpoint is missing."""
        last = self.last_checkpoint
        if last.is_file():
            _link(last, self.previous_checkpoint)
        target = self.best_checkpoint if best else last
        try:
            save_checkpoint(target, state)  # removes its temporary file when it fails
        except OSError as e:
            if is_disk_full(e):
                raise disk_full(target, e) from None
            raise
        if best:
            _link(self.best_checkpoint, last)

    def load_state(self, map_location="cpu") -> tuple[dict, str | None]:
        """The newest readable checkpoint: ``(state, note)``, where ``note`` says so when
        ``last.pt`` was unreadable and ``previous.pt`` was used.

        Raises:
            CheckpointError: no checkpoint can be read (each one's reason is named).
        """
        errors = []
        for path in (self.last_checkpoint, self.previous_checkpoint):
            if not path.is_file():
                continue
            try:
                state = load_checkpoint(path, map_location=map_location)
            except CheckpointError as e:
                errors.append(str(e))
                continue
            note = None
            if errors:
                note = f"{errors[0]}; falling back to {path.name} (epoch {state['epoch']})"
            return state, note
        raise CheckpointError(
            "; ".join(errors) or f"{self.checkpoints}: no checkpoint to resume from"
        )

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    # -- contents
    def config(self) -> Config:
        return from_dict(load_yaml(self.config_path))

    def save_config(self, cfg: Config) -> None:
        """``config.yaml``: the resolved config (its secrets were masked when it was
        loaded, :mod:`rsexp.config.redact`)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.config_path, yaml.safe_dump(to_dict(cfg), sort_keys=False))

    def summary(self) -> dict | None:
        """``summary.json``, None when the run has none yet.

        Raises:
            RunFileError: the file is not JSON (damaged), naming it.
        """
        if not self.summary_path.is_file():
            return None
        try:
            return json.loads(self.summary_path.read_text())
        except json.JSONDecodeError as e:
            raise RunFileError(
                f"{self.summary_path}: not JSON ({e.msg}, line {e.lineno})"
            ) from None

    def write_summary(self, summary: dict) -> None:
        write_json_atomic(self.summary_path, summary)

    def write_splits(self, split_ids: dict[str, list[str]], data_cfg) -> None:
        """``splits.json``: which clips each split held (the validation split is carved
        with a seed; this is the record that val and test never met)."""
        write_json_atomic(
            self.path / "splits.json",
            {"val_fraction": data_cfg.val_fraction, "val_seed": data_cfg.val_seed, **split_ids},
        )

    def splits(self) -> dict:
        path = self.path / "splits.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def metrics(self) -> list[dict]:
        return read_metrics(self.path)

    def params(self) -> dict[str, str]:
        """``params.json``: the run's flattened config and provenance, as first recorded."""
        path = self.path / self.PARAMS
        return json.loads(path.read_text()) if path.is_file() else {}

    def tracker_ids(self) -> dict[str, str]:
        """``{backend: run id}`` of the tracked runs this folder mirrors."""
        path = self.path / self.TRACKERS
        if not path.is_file():
            return {}
        ledger = json.loads(path.read_text())
        return {k: v["run_id"] for k, v in ledger.items() if v.get("run_id")}

    def has_checkpoint(self) -> bool:
        return self.last_checkpoint.is_file() or self.previous_checkpoint.is_file()

    def is_finished(self) -> bool:
        s = self.summary()
        return s is not None and s.get("status") == "finished"
