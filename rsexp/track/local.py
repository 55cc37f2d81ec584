"""The local run folder: ``metrics.jsonl`` (the source of truth) and ``overlays/``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from rsexp.track.base import RunInfo, Writer

METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def overlay_path(run_dir: Path, key: str, step: int) -> Path:
    """``overlays/<key without 'overlay/'>/epoch_<step>.png``."""
    return Path(run_dir) / "overlays" / key.split("/", 1)[-1] / f"epoch_{step:04d}.png"


class LocalWriter(Writer):
    """Always on. Appends one JSON line per epoch; images go under ``overlays/``."""

    name = "local"

    def start(self, info: RunInfo) -> str | None:
        self.run_dir = info.run_dir
        self.path = info.run_dir / METRICS_FILE
        self.path.touch()
        return None

    def logged_epochs(self) -> set[int]:
        return {int(r["epoch"]) for r in read_metrics(self.run_dir)}

    def logged_image_steps(self) -> set[tuple[str, int]]:
        root = self.run_dir / "overlays"
        return {
            (f"overlay/{p.parent.name}", int(p.stem.removeprefix("epoch_")))
            for p in root.glob("*/epoch_*.png")
        }

    def rewrite(self, history: list[dict]) -> None:
        """Make ``metrics.jsonl`` hold exactly ``history`` (resume: checkpoint is truth)."""
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
        os.replace(tmp, self.path)

    def log_params(self, params: dict[str, str]) -> None:
        tmp = self.run_dir / ".params.json.tmp"
        tmp.write_text(json.dumps(params, indent=1))
        os.replace(tmp, self.run_dir / "params.json")

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"epoch": step, **metrics}) + "\n")

    def log_image(self, key: str, image: np.ndarray, step: int, caption: str = "") -> None:
        path = overlay_path(self.run_dir, key, step)
        if not path.is_file():  # the experiment may already have written it
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path, compress_level=1)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        dest = self.run_dir / (artifact_path or "") / Path(path).name
        if Path(path).resolve() != dest.resolve():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)

    def finish(self, status) -> None:
        pass  # the run's status goes into summary.json (rsexp.experiment.lifecycle)
