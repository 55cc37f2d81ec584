"""The run folder, ``runs/<experiment>/<run_id>/``: one object that knows its files.

``config.yaml`` (the resolved config), ``metrics.jsonl`` (one line per epoch, the
source of truth), ``summary.json``, ``params.json``, ``trackers.json`` (the ids of the
MLflow / W&B runs it mirrors), ``checkpoints/{last,best}.pt``, ``overlays/``,
``figures/``. Training, resume, the sweep and the tables all read runs through it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from rsexp.config import Config, from_dict, load_yaml, to_dict
from rsexp.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rsexp.track.local import METRICS_FILE, read_metrics
from rsexp.track.provenance import redact
from rsexp.track.tracker import TRACKERS_FILE


def write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False))
    os.replace(tmp, path)


def _link(src: Path, dst: Path) -> None:
    """``dst`` becomes another name of ``src``'s file, atomically (files are never
    written in place, so the two names stay equal until one is replaced)."""
    tmp = dst.with_name(f".{dst.name}.link")
    tmp.unlink(missing_ok=True)
    os.link(src, tmp)
    os.replace(tmp, dst)


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
        if best:
            save_checkpoint(self.best_checkpoint, state)
            _link(self.best_checkpoint, last)
        else:
            save_checkpoint(last, state)

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
        """``config.yaml`` with secret-looking values redacted (they never reach a file)."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / f".{self.CONFIG}.tmp"
        tmp.write_text(yaml.safe_dump(redact(to_dict(cfg)), sort_keys=False))
        os.replace(tmp, self.config_path)

    def summary(self) -> dict | None:
        if not self.summary_path.is_file():
            return None
        return json.loads(self.summary_path.read_text())

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
