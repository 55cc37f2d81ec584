"""Clip dataset with per-frame guidance masks, over frames in memory or in the clip cache."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from rsexp.data.cache import CachedClips
from rsexp.data.transforms import SpatialAugment, to_float


class ClipDataset(Dataset):
    """Decoded clips, each with its guidance, with TSN-style segment sampling.

    Every clip stores ``K = T * choices`` frames: ``choices`` candidate frames for each
    of its ``T`` equal temporal segments. A training item takes one candidate per
    segment at random (temporal jitter); an evaluation item takes the middle one, so
    validation is deterministic. With ``choices=1`` every item is the stored clip.

    Items are dicts: ``video`` [T, 3, H, W] float (normalised), ``label`` int,
    ``mask`` [T, N] bool guidance cells, ``frame_valid`` [T] bool, ``index`` int.

    Args:
        video_ids: one id per clip.
        videos: [V, K, H, W, 3] uint8 array, or a
            :class:`rsexp.data.cache.CachedClips` (read from disk per item).
        labels: [V] int.
        masks: [V, K, N] bool guidance on the stored frames (all False without guidance).
        choices: candidate frames per segment (K / T).
        augment: optional :class:`SpatialAugment`, applied to pixels and mask together.
        seed: seeds the per-item generator with (seed, epoch, index).
        train: random candidate per segment (True) or the middle one (False).
        windows: for clips that are windows of whole videos, the
            :class:`~rsexp.data.windows.WindowIndex` that turns window predictions into
            frame predictions (action segmentation); None otherwise.
    """

    def __init__(
        self,
        video_ids,
        videos: np.ndarray | CachedClips,
        labels,
        masks,
        choices: int = 1,
        augment: SpatialAugment | None = None,
        seed: int = 0,
        train: bool = False,
        windows=None,
    ):
        if not (len(video_ids) == len(videos) == len(labels) == len(masks)):
            raise ValueError("video_ids, videos, labels and masks differ in length")
        self.video_ids = list(video_ids)
        if isinstance(videos, np.ndarray):
            videos = torch.from_numpy(np.ascontiguousarray(videos))
        self.videos = videos
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.masks = torch.as_tensor(masks, dtype=torch.bool)
        if self.masks.shape[1] % choices:
            raise ValueError(f"{self.masks.shape[1]} stored frames is not a multiple of {choices}")
        self.choices, self.augment, self.seed, self.train = choices, augment, seed, train
        self.epoch = 0
        self.windows = windows

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.video_ids)

    def stored(self, i: int, pick: torch.Tensor) -> torch.Tensor:
        """Frames ``pick`` [T] of clip ``i``'s stored ones, [T, H, W, 3] uint8; from the
        cache only those are read."""
        if isinstance(self.videos, torch.Tensor):
            return self.videos[i][pick]
        return torch.from_numpy(self.videos.frames(i, pick.numpy()))

    def frame_choice(self, i: int, gen: torch.Generator | None = None) -> torch.Tensor:
        """Indices [T] into clip ``i``'s stored frames: random per segment with ``gen``,
        the middle candidate without."""
        c = self.choices
        T = self.masks.shape[1] // c
        if gen is None or c == 1:
            offset = torch.full((T,), c // 2)
        else:
            offset = torch.randint(0, c, (T,), generator=gen)
        return torch.arange(T) * c + offset

    def clip(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The evaluation view of clip ``i``: frames [T, H, W, 3] uint8 and mask [T, N]."""
        pick = self.frame_choice(i)
        return self.stored(i, pick), self.masks[i][pick]

    def __getitem__(self, i: int) -> dict:
        gen = None
        if self.train:
            gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) & 0x7FFFFFFF)
        pick = self.frame_choice(i, gen)
        video, mask = to_float(self.stored(i, pick)), self.masks[i][pick]
        if self.augment is not None and gen is not None:
            video, mask = self.augment(video, mask, gen)
        return {
            "video": video,
            "label": self.labels[i],
            "mask": mask,
            "frame_valid": mask.any(dim=-1),
            "index": i,
        }
