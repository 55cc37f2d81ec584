"""The examples' data: rsexp's synthetic clips with their guidance, as a torch Dataset.

Each item is ``{"pixel_values": [T, 3, H, W], "labels": int, "guidance": [T, g*g] bool}``;
the guidance masks come from a :class:`rsexp.GuidanceStore` through
:func:`rsexp.guidance_masks`, as your own data's would (a store loaded from a guidance
JSON, the video's id, the frame numbers the clip sampled). Swap this file for your data.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import rsexp
from rsexp.data.synthetic import generate_split

FRAMES, SIZE, GRID, CLASSES = 8, 32, 4, 8


class GuidedClips(torch.utils.data.Dataset):
    """``n`` synthetic clips of ``FRAMES`` frames at ``SIZE`` px, ``CLASSES`` classes."""

    def __init__(self, n: int, seed: int = 0):
        data = generate_split(
            n, num_frames=FRAMES, size=SIZE, grid=GRID, num_classes=CLASSES,
            num_distractors=2, object_size=8, noise=8.0, seed=seed, prefix="train",
        )  # fmt: skip
        # the guidance as rsexp stores it: key t = the t-th of T frames of each video
        self.store = rsexp.GuidanceStore.from_masks(data.video_ids, data.cells, grid=GRID)
        videos = torch.from_numpy(data.videos).permute(0, 1, 4, 2, 3).float() / 255.0
        self.videos = (videos - 0.45) / 0.225  # [V, T, 3, H, W]
        self.labels = torch.from_numpy(data.labels).long()
        self.video_ids = list(data.video_ids)
        self.frames = np.arange(FRAMES)  # the frames each clip sampled (all of them here)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        masks = rsexp.guidance_masks(
            self.store, [self.video_ids[i]], self.frames, lengths=[FRAMES]
        )
        return {"pixel_values": self.videos[i], "labels": self.labels[i], "guidance": masks[0]}


def tiny_timesformer(hf_path: str = ""):
    """A small random Hugging Face TimeSformer, or a ``save_pretrained`` folder's with a
    new head for the synthetic classes."""
    import transformers

    if hf_path:
        return transformers.TimesformerForVideoClassification.from_pretrained(
            hf_path, num_labels=CLASSES, ignore_mismatched_sizes=True, local_files_only=True
        )
    config = transformers.TimesformerConfig(
        image_size=SIZE, patch_size=8, num_frames=FRAMES, hidden_size=64,
        num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        num_labels=CLASSES,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.TimesformerForVideoClassification(config)


def parse_args(doc: str, argv=None) -> argparse.Namespace:
    """The examples' options: ``--hf-path``, ``--epochs``, ``--clips``, ``--lr``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--hf-path", default="", help="a save_pretrained TimeSformer folder")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--clips", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    return p.parse_args(argv)
