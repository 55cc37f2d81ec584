"""Frame-wise prediction over whole videos (action segmentation, paper Table 2).

A whole video, cached at ``data.segmentation_fps`` (10 fps, as the paper processes
Desktop Assembly), is cut into overlapping windows of ``data.num_frames`` consecutive
frames, ``data.window_stride`` apart (the last window ends on the last frame). Each
window is a clip for the model; each frame then takes the class of the mean logits of
the windows that cover it, and the per-frame labels are scored against the ground
truth at the same frames (:class:`~rsexp.core.metrics.SegmentationMeter`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsexp.data.cache import load_frames


def window_starts(num: int, length: int, stride: int) -> np.ndarray:
    """First frames of the windows of ``length`` frames over ``num`` frames: every
    ``stride``, plus one ending on the last frame; one window (frames repeated past
    the end) for a video shorter than a window."""
    if num <= length:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, num - length + 1, stride)
    if starts[-1] != num - length:
        starts = np.r_[starts, num - length]
    return starts.astype(np.int64)


def window_label(labels: np.ndarray, start: int, length: int, rule: str) -> int:
    """A training window's label: its centre frame's (``centre``) or its most frequent
    one (``majority``, ties to the smaller class id)."""
    span = labels[start : start + length]
    if rule == "majority":
        return int(np.bincount(span).argmax())
    return int(labels[min(start + length // 2, len(labels) - 1)])


@dataclass
class WindowIndex:
    """Which window is where: ``video`` [W] (index into ``keys``), ``start`` [W] (first
    stored frame), ``length`` frames each; ``labels[v]`` holds video v's true label per
    stored frame."""

    keys: list[str]
    labels: list[np.ndarray]
    video: np.ndarray
    start: np.ndarray
    length: int

    def frame_predictions(self, logits: np.ndarray) -> list[np.ndarray]:
        """Per video, [F_v] the class of the mean window logits over each frame.

        Args:
            logits: [W, C] window logits, in window order.
        """
        out = []
        offsets = np.arange(self.length)
        for v, labels in enumerate(self.labels):
            w = np.flatnonzero(self.video == v)
            frames = np.minimum(self.start[w, None] + offsets, len(labels) - 1)  # [w, T]
            total = np.zeros((len(labels), logits.shape[1]), dtype=np.float64)
            np.add.at(total, frames.ravel(), np.repeat(logits[w], self.length, axis=0))
            out.append(total.argmax(axis=1))
        return out


class WindowClips:
    """The windows of cached whole videos, read from disk on demand, with the interface
    of :class:`~rsexp.data.cache.CachedClips` (``frames(i, idx)``); holds only paths and
    the index, so it pickles cheaply into DataLoader workers."""

    def __init__(self, files: list[Path], index: WindowIndex):
        self.files, self.index = [Path(f) for f in files], index

    def __len__(self) -> int:
        return len(self.index.video)

    def frames(self, i: int, idx) -> np.ndarray:
        v = int(self.index.video[i])
        last = len(self.index.labels[v]) - 1
        pick = np.minimum(int(self.index.start[i]) + np.asarray(idx), last)
        return load_frames(self.files[v], pick)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.frames(i, np.arange(self.index.length))
