"""The local run folder: ``metrics.jsonl`` (the source of truth) and ``overlays/``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from rsexp.errors import RunFileError
from rsexp.fileio import append_line, atomic, write_text
from rsexp.track.base import RunInfo, Writer

METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The epochs of ``metrics.jsonl``, one per line.

    Raises:
        RunFileError: naming the file and the line that is not a whole record (a line
            cut short by a crash or a full disk on another machine's writer).
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise RunFileError(
                f"{path}, line {n}: not a whole JSON record ({e.msg}: {line[:60]!r})"
            ) from None
    return out


def save_png(image: np.ndarray, path: Path) -> Path:
    """``image`` as a PNG at ``path``, whole or not at all (fast: trackers re-encode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", compress_level=1)
    return path


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
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in history))

    def log_params(self, params: dict[str, str]) -> None:
        """``params.json``: a param is recorded once, as MLflow's are: a resume adds the
        keys it brings and never rewrites one (the digests of the inputs the first epochs
        were trained on stay; a change is a param of its own)."""
        path = self.run_dir / "params.json"
        held = json.loads(path.read_text()) if path.is_file() else {}
        write_text(path, json.dumps({**params, **held}, indent=1))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        append_line(self.path, json.dumps({"epoch": step, **metrics}))  # whole, or not

    def log_image(self, key: str, image: np.ndarray, step: int, caption: str = "") -> None:
        path = overlay_path(self.run_dir, key, step)
        if not path.is_file():  # the experiment may already have written it
            save_png(image, path)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        dest = self.run_dir / (artifact_path or "") / Path(path).name
        if Path(path).resolve() != dest.resolve():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)

    def finish(self, status, reason: str = "") -> None:
        pass  # the run's status goes into summary.json (rsexp.experiment.lifecycle)
