"""The guidance store: the authors' released JSON format, validated once at load.

Format (0-based rows and columns on the g x g grid)::

    {video_id: {frame_index: {"text": "{\"key_regions\": [[row, col], ...]}"}}}

``text`` is itself a JSON string, as the LLM returned it. Everything is checked when the
file is read: malformed JSON or a wrong structure raises :class:`GuidanceFormatError`
naming the file, the video and the frame; cells outside the grid are dropped and counted
in one warning. Training code never sees the raw format.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rsexp.guidance.grid import cells_to_mask


class GuidanceFormatError(ValueError):
    """The guidance file does not follow the released format; says where."""


Cells = tuple[tuple[int, int], ...]


@dataclass
class GuidanceStore:
    """Per-video, per-frame key regions on a ``grid`` x ``grid`` grid."""

    grid: int = 4
    regions: dict[str, dict[int, Cells]] = field(default_factory=dict)
    source: str = "<memory>"
    dropped_cells: int = 0

    # ------------------------------------------------------------------ reading
    @classmethod
    def load(cls, path: str | Path, grid: int = 4) -> GuidanceStore:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"guidance file not found: {path}")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise GuidanceFormatError(f"{path}: not valid JSON: {e}") from e
        store = cls.from_json(raw, grid=grid, source=str(path))
        if store.dropped_cells:
            warnings.warn(
                f"{path}: dropped {store.dropped_cells} key regions outside the "
                f"{grid}x{grid} grid",
                stacklevel=2,
            )
        return store

    @classmethod
    def from_json(cls, raw, grid: int = 4, source: str = "<memory>") -> GuidanceStore:
        def fail(where: str, msg: str):
            raise GuidanceFormatError(f"{source}: {where}: {msg}")

        if not isinstance(raw, dict):
            fail("top level", f"expected an object of videos, got {type(raw).__name__}")
        regions: dict[str, dict[int, Cells]] = {}
        dropped = 0
        for vid, frames in raw.items():
            if not isinstance(frames, dict):
                fail(
                    f"video {vid!r}", f"expected an object of frames, got {type(frames).__name__}"
                )
            per_frame: dict[int, Cells] = {}
            for fkey, entry in frames.items():
                where = f"video {vid!r}, frame {fkey!r}"
                try:
                    frame = int(fkey)
                except (TypeError, ValueError):
                    fail(where, "frame index is not an integer")
                if frame < 0:
                    fail(where, "frame index is negative")
                if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
                    fail(where, 'expected {"text": "<json string>"}')
                try:
                    text = json.loads(entry["text"])
                except json.JSONDecodeError as e:
                    fail(where, f"'text' is not valid JSON: {e}")
                if not isinstance(text, dict) or not isinstance(text.get("key_regions"), list):
                    fail(where, "'text' must hold an object with a 'key_regions' list")
                cells = []
                for cell in text["key_regions"]:
                    if (
                        not isinstance(cell, list)
                        or len(cell) != 2
                        or not all(isinstance(v, int) and not isinstance(v, bool) for v in cell)
                    ):
                        fail(where, f"key region {cell!r} is not a [row, col] pair of integers")
                    if 0 <= cell[0] < grid and 0 <= cell[1] < grid:
                        cells.append((cell[0], cell[1]))
                    else:
                        dropped += 1
                per_frame[frame] = tuple(sorted(set(cells)))
            regions[str(vid)] = per_frame
        return cls(grid=grid, regions=regions, source=source, dropped_cells=dropped)

    # ------------------------------------------------------------------ writing
    def to_json(self) -> dict:
        return {
            vid: {
                str(f): {"text": json.dumps({"key_regions": [list(c) for c in cells]})}
                for f, cells in sorted(frames.items())
            }
            for vid, frames in self.regions.items()
        }

    def save(self, path: str | Path) -> None:
        """Write the released format atomically (temp file + ``os.replace``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json()))
        os.replace(tmp, path)

    @classmethod
    def from_masks(cls, video_ids, masks: np.ndarray, grid: int) -> GuidanceStore:
        """masks: [V, T, grid, grid] bool, frame t of video v annotated as frame index t."""
        regions = {}
        for vid, m in zip(video_ids, masks, strict=True):
            regions[vid] = {
                t: tuple((int(r), int(c)) for r, c in zip(*np.nonzero(m[t]), strict=True))
                for t in range(m.shape[0])
            }
        return cls(grid=grid, regions=regions)

    # ------------------------------------------------------------------ lookup
    def __contains__(self, video_id: str) -> bool:
        return video_id in self.regions

    def __len__(self) -> int:
        return len(self.regions)

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()

    def clip_mask(
        self, video_id: str, frame_indices, max_frame_gap: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Guidance for the frames a clip samples.

        Each sampled frame takes the annotation of the nearest annotated frame, if that
        is at most ``max_frame_gap`` frames away; otherwise it has no guidance.

        Returns:
            mask [T, grid * grid] bool, and valid [T] bool (an annotation was found and
            it has at least one cell).
        """
        n = self.grid * self.grid
        frames = self.regions.get(video_id, {})
        mask = np.zeros((len(frame_indices), n), dtype=bool)
        if not frames:
            return mask, np.zeros(len(frame_indices), dtype=bool)
        keys = sorted(frames)
        for t, f in enumerate(frame_indices):
            i = bisect.bisect_left(keys, f)
            near = [k for k in keys[max(0, i - 1) : i + 1] if abs(k - f) <= max_frame_gap]
            if near:
                best = min(near, key=lambda k: (abs(k - f), k))
                mask[t] = cells_to_mask(frames[best], self.grid)
        return mask, mask.any(axis=1)


def select_covered(video_ids, coverage: float, seed: int = 0) -> set[str]:
    """The deterministic subset of training videos whose guidance is used.

    Videos are ranked by a seeded hash of their id and the first ``round(coverage * n)``
    kept, so the choice does not depend on the order of ``video_ids`` and a smaller
    coverage picks a subset of a larger one (same seed).
    """
    ids = sorted(set(video_ids))
    keep = round(coverage * len(ids))
    ranked = sorted(ids, key=lambda v: hashlib.sha1(f"{seed}:{v}".encode()).hexdigest())
    return set(ranked[:keep])
