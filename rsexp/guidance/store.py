"""The guidance store: the authors' released JSON format, validated once at load.

Format (0-based rows and columns on the g x g grid)::

    {video_id: {frame_key: {"text": "{\"key_regions\": [[row, col], ...]}"}}}

``text`` is itself a JSON string, as the LLM returned it. What a frame key means is the
file's *frame-key convention* (``guidance.frame_keys``):

- ``position`` (the released format): key k is the k-th of K frames taken at
  ``k * (n // K)`` of an n-frame video (the authors' ``get_data.py``; K = 10 there);
- ``fps:<r>``: key k is the k-th frame of the video resampled at r frames per second
  (the paper annotates Desktop Assembly at 10 fps): video frame ``round(k * fps / r)``;
- ``frame``: keys are video frame numbers.

A file written by ``rsexp guidance`` (or for the synthetic data) has a metadata record
beside it, ``<stem>.meta.json``, that names its convention and K; reading it with
another convention is an error, not a silent mismatch. Everything is checked when the
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

from rsexp.config import GuidanceConfig, parse_frame_keys
from rsexp.errors import GuidanceFormatError  # noqa: F401 (raised here)
from rsexp.guidance.grid import cells_to_mask

Cells = tuple[tuple[int, int], ...]
FRAME_KEYS = ("position", "frame", "fps:<r>")


def key_frames(keys, convention: str, positions: int, length: int, fps: float) -> np.ndarray:
    """The video frame numbers behind frame ``keys`` of one video (see the module doc).

    Args:
        length: the video's real frame count (``position``).
        fps: the video's frame rate (``fps:<r>``).
    """
    keys = np.asarray(keys, dtype=np.int64)
    rate = parse_frame_keys(convention)
    if convention == "frame":
        return keys
    if convention == "position":
        if length <= 0:
            raise ValueError("frame_keys=position needs the video's frame count")
        return keys * (length // positions)
    if fps <= 0:
        raise ValueError(f"frame_keys={convention} needs the video's frame rate")
    return np.round(keys * fps / rate).astype(np.int64)


def meta_path(path: str | Path) -> Path:
    """The metadata record beside a guidance file: ``<stem>.meta.json``."""
    path = Path(path)
    return path.with_name(path.stem + ".meta.json")


@dataclass
class GuidanceStore:
    """Per-video, per-frame-key key regions on a ``grid`` x ``grid`` grid; frame keys
    follow ``frame_keys`` (K = ``positions`` for ``position``)."""

    grid: int = 4
    regions: dict[str, dict[int, Cells]] = field(default_factory=dict)
    source: str = "<memory>"
    dropped_cells: int = 0
    frame_keys: str = "position"
    positions: int = 10
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ reading
    @classmethod
    def load(
        cls, path: str | Path, grid: int = 4, frame_keys: str = "position", positions: int = 10
    ) -> GuidanceStore:
        """Read ``path`` with its frame keys meaning ``frame_keys``. K (``positions``)
        comes from the file's metadata record when it has one."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"guidance file not found: {path}")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise GuidanceFormatError(f"{path}: not valid JSON: {e}") from e
        meta = read_meta(path)
        written = meta.get("frame_keys", frame_keys)
        if written != frame_keys:
            raise GuidanceFormatError(
                f"{path}: its frame keys are {written!r} (metadata {meta_path(path)}) but "
                f"guidance.frame_keys={frame_keys}; set guidance.frame_keys={written}"
            )
        store = cls.from_json(raw, grid=grid, source=str(path))
        store.frame_keys, store.meta = frame_keys, meta
        store.positions = int(meta.get("frames_per_video", positions))
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

    def save(self, path: str | Path, meta: dict | None = None) -> None:
        """Write the released format, then its metadata record, each atomically (temp
        file + ``os.replace``): a metadata record says its file is complete."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            **self.meta,
            **(meta or {}),
            "frame_keys": self.frame_keys,
            "frames_per_video": self.positions,
            "grid": self.grid,
        }
        write_atomic(path, json.dumps(self.to_json()))
        write_atomic(meta_path(path), json.dumps(record, indent=1))

    @classmethod
    def from_masks(cls, video_ids, masks: np.ndarray, grid: int) -> GuidanceStore:
        """masks: [V, T, grid, grid] bool, frame t of each T-frame video annotated: key
        t = position t of T."""
        regions = {}
        for vid, m in zip(video_ids, masks, strict=True):
            regions[vid] = {
                t: tuple((int(r), int(c)) for r, c in zip(*np.nonzero(m[t]), strict=True))
                for t in range(m.shape[0])
            }
        return cls(grid=grid, regions=regions, positions=int(masks.shape[1]))

    # ------------------------------------------------------------------ lookup
    def __contains__(self, video_id: str) -> bool:
        return video_id in self.regions

    def __len__(self) -> int:
        return len(self.regions)

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()

    def clip_mask(
        self,
        video_id: str,
        frame_indices,
        max_frame_gap: int = 0,
        length: int = 0,
        fps: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Guidance for the frames a clip samples.

        The file's frame keys are first turned into video frame numbers (``length``:
        the video's real frame count, for ``position``; ``fps``: its frame rate, for
        ``fps:<r>``). Each sampled frame then takes the annotation of the nearest
        annotated frame, if that is at most ``max_frame_gap`` frames away; otherwise it
        has no guidance.

        Returns:
            mask [T, grid * grid] bool, and valid [T] bool (an annotation was found and
            it has at least one cell).
        """
        n = self.grid * self.grid
        frames = self.regions.get(video_id, {})
        mask = np.zeros((len(frame_indices), n), dtype=bool)
        if not frames:
            return mask, np.zeros(len(frame_indices), dtype=bool)
        try:
            numbers = key_frames(list(frames), self.frame_keys, self.positions, length, fps)
        except ValueError as e:
            raise GuidanceFormatError(f"{self.source}: video {video_id!r}: {e}") from None
        # two keys on one frame (a video shorter than K): the first key's cells
        at = {}
        for k, f in zip(frames, numbers.tolist(), strict=True):
            at.setdefault(f, frames[k])
        keys = sorted(at)
        for t, f in enumerate(frame_indices):
            i = bisect.bisect_left(keys, f)
            near = [k for k in keys[max(0, i - 1) : i + 1] if abs(k - f) <= max_frame_gap]
            if near:
                best = min(near, key=lambda k: (abs(k - f), k))
                mask[t] = cells_to_mask(at[best], self.grid)
        return mask, mask.any(axis=1)


def read_meta(path: str | Path) -> dict:
    """The metadata record of the guidance file at ``path`` ({} when it has none)."""
    mp = meta_path(path)
    if not mp.is_file():
        return {}
    try:
        meta = json.loads(mp.read_text())
    except json.JSONDecodeError as e:
        raise GuidanceFormatError(f"{mp}: not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise GuidanceFormatError(f"{mp}: expected an object")
    return meta


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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


def guidance_masks(
    store: GuidanceStore,
    video_ids,
    frame_indices,
    grid: int | None = None,
    *,
    lengths=None,
    fps=None,
    max_frame_gap: int = GuidanceConfig.max_frame_gap,
    strict: bool = False,
):
    """Guidance masks of a batch of clips, for :class:`~rsexp.ReasoningSupervision`.

    Args:
        store: the guidance (``GuidanceStore.load(path, grid, frame_keys)``).
        video_ids: B video ids, as the store names them.
        frame_indices: [B, T] (or one list of T for every clip) video frame numbers
            each clip sampled.
        grid: the g of the g x g masks (must be the store's; None: the store's).
        lengths: B frame counts of the videos (needed by ``frame_keys=position``).
        fps: B frame rates (needed by ``frame_keys=fps:<r>``).
        max_frame_gap: a sampled frame takes the nearest annotated frame at most this
            many frames away (default: rsexp's own, ``guidance.max_frame_gap``).
        strict: a video the store does not hold is an error (default: it has no
            guidance, as the videos a ``guidance.coverage`` below 1 leaves out).

    Returns:
        [B, T, g * g] bool tensor; a frame without guidance is all False (the loss skips
        it).

    Raises:
        KeyError: with ``strict``, naming the videos the store does not hold.
        ValueError: a grid other than the store's.
    """
    import torch

    if grid is not None and grid != store.grid:
        raise ValueError(f"guidance_masks: grid {grid}, but {store.source} is on {store.grid}")
    video_ids = list(video_ids)
    frames = np.asarray(frame_indices)
    if frames.ndim == 1:
        frames = np.broadcast_to(frames, (len(video_ids), frames.shape[0]))
    missing = [v for v in video_ids if v not in store]
    if missing and strict:
        raise KeyError(f"{store.source}: no guidance for videos {', '.join(map(repr, missing))}")
    out = []
    for i, vid in enumerate(video_ids):
        length = int(lengths[i]) if lengths is not None else 0
        rate = float(fps[i]) if fps is not None else 0.0
        out.append(store.clip_mask(vid, frames[i].tolist(), max_frame_gap, length, rate)[0])
    return torch.from_numpy(np.stack(out))
