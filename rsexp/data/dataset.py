"""In-memory clip dataset with per-frame guidance masks."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from rsexp.data.transforms import SpatialAugment, to_float


class ClipDataset(Dataset):
    """Decoded clips held in memory, each with its guidance.

    Items are dicts: ``video`` [T, 3, H, W] float (normalised), ``label`` int,
    ``mask`` [T, N] bool guidance cells, ``frame_valid`` [T] bool, ``index`` int.

    Args:
        video_ids: one id per clip.
        videos: [V, T, H, W, 3] uint8.
        labels: [V] int.
        masks: [V, T, N] bool guidance (all False where a video has none).
        augment: optional :class:`SpatialAugment`, applied to pixels and mask together.
        seed: seeds the per-item augmentation generator with (seed, epoch, index).
    """

    def __init__(
        self,
        video_ids,
        videos,
        labels,
        masks,
        augment: SpatialAugment | None = None,
        seed: int = 0,
    ):
        if not (len(video_ids) == len(videos) == len(labels) == len(masks)):
            raise ValueError("video_ids, videos, labels and masks differ in length")
        self.video_ids = list(video_ids)
        self.videos = torch.from_numpy(np.ascontiguousarray(videos))
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.masks = torch.as_tensor(masks, dtype=torch.bool)
        self.augment, self.seed, self.epoch = augment, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, i: int) -> dict:
        video, mask = to_float(self.videos[i]), self.masks[i]
        if self.augment is not None:
            gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) & 0x7FFFFFFF)
            video, mask = self.augment(video, mask, gen)
        return {
            "video": video,
            "label": self.labels[i],
            "mask": mask,
            "frame_valid": mask.any(dim=-1),
            "index": i,
        }
