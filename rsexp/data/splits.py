"""What a dataset builder returns: a :class:`Split` per split, before guidance is
attached, and the :class:`RawSplits` around them."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rsexp.data.windows import WindowIndex

# progress(description, total) -> advance(); the experiment layer passes a rich one
Progress = Callable[[str, int], Callable[[], None]]


@dataclass
class Split:
    """One split's clips, before guidance is attached.

    Every clip stores ``K = num_frames * choices`` frames (``choices`` candidates per
    temporal segment, see :class:`rsexp.data.dataset.ClipDataset`).

    Attributes:
        ids: clip ids [V].
        videos: [V, K, S, S, 3] uint8 array, or a sequence of [K, S, S, 3] arrays.
        labels: [V] int.
        frames: [V, K] the video frame index of each stored frame (for the guidance).
        keys: [V] each clip's video id in the guidance JSON.
        choices: candidate frames per segment.
        boxes: [V, 4] the stored square's crop (y0, x0, h, w) in pixels of the video
            frame, and ``frame_hw`` [V, 2] that frame's (H, W); None when the stored
            frames are the full frames the guidance was made on.
        lengths: [V] each clip's video's frame count and ``fps`` [V] its frame rate
            (what the guidance file's frame keys are mapped with); fps 0 = unknown.
        windows: for windows of whole videos (action segmentation), where each window
            is, to turn window predictions into frame predictions.
    """

    ids: list[str]
    videos: np.ndarray | Sequence
    labels: np.ndarray
    frames: np.ndarray
    keys: list[str]
    choices: int = 1
    boxes: np.ndarray | None = None
    frame_hw: np.ndarray | None = None
    lengths: np.ndarray | None = None
    fps: np.ndarray | None = None
    windows: WindowIndex | None = None  # clips that are windows of whole videos

    def guidance_masks(self, lookup: Callable, grid: int, keep=None) -> np.ndarray:
        """Masks [V, K, grid * grid] on the stored frames.

        Args:
            lookup: ``(key, frame_indices [K], length, fps) -> mask [K, grid * grid]``
                on the full video frame (the guidance store's nearest-frame lookup).
            keep: guidance keys whose guidance is used (coverage); None = all.
        """
        import torch  # lazily: the spawned decoding workers import this package

        from rsexp.data.transforms import crop_mask

        out = np.zeros((len(self.ids), self.frames.shape[1], grid * grid), dtype=bool)
        for i, key in enumerate(self.keys):
            if keep is not None and key not in keep:
                continue
            length = int(self.lengths[i]) if self.lengths is not None else 0
            fps = float(self.fps[i]) if self.fps is not None else 0.0
            mask = lookup(key, self.frames[i], length, fps)
            if self.boxes is not None and mask.any():
                hw = tuple(int(x) for x in self.frame_hw[i])
                mask = crop_mask(torch.from_numpy(mask), tuple(self.boxes[i]), hw, grid).numpy()
            out[i] = mask
        return out


def carve_val(entries: list, fraction: float, seed: int, group_of: Callable) -> tuple:
    """``(train, val)``: whole groups of ``entries`` (``group_of(entry)``: the actor group
    for UCF, the video elsewhere) held out as the validation split, about ``fraction``
    of the groups, chosen with ``seed``; at least one group stays on each side."""
    if fraction <= 0:
        return list(entries), []
    groups = sorted({group_of(e) for e in entries})
    if len(groups) < 2:
        raise ValueError(
            f"cannot hold out a validation split: the training side has {len(groups)} "
            f"group(s) ({groups}); set data.val_fraction=0"
        )
    k = min(len(groups) - 1, max(1, round(fraction * len(groups))))
    held = set(random.Random(seed).sample(groups, k))
    return [e for e in entries if group_of(e) not in held], [
        e for e in entries if group_of(e) in held
    ]


@dataclass
class RawSplits:
    """What a dataset builder returns: the training split, the validation split (held
    out of the training data; None with ``data.val_fraction=0``), the test split (the
    dataset's official evaluation side; None if it has none), the class names, the
    dataset's guidance JSON and a digest of the data for provenance. ``exact_guidance``,
    for generated data only, is ``(video_ids, cells [V, T, g, g])`` for the experiment
    layer to write at ``guidance_path`` in the released format. ``skipped`` names the
    videos left out (``data.bad_videos=skip``) with their reasons."""

    train: Split
    val: Split | None
    class_names: list[str]
    guidance_path: Path
    digest: str
    exact_guidance: tuple | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    cache_dirs: list[Path] = field(default_factory=list)
    test: Split | None = None
