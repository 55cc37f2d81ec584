"""Datasets: name-keyed registry of split builders (synthetic now; real sets register here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class RawSplits:
    """What a dataset builder returns before guidance is attached.

    ``train``/``val`` are ``(video_ids, videos [V,T,H,W,3] uint8, labels [V],
    frame_indices [V, T])``; ``guidance_path`` is the dataset's guidance JSON.
    ``exact_guidance``, for generated data only, is ``(video_ids, cells [V, T, g, g])``
    for the experiment layer to write at ``guidance_path`` in the released format.
    """

    train: tuple
    val: tuple
    class_names: list[str]
    guidance_path: Path
    cache_dir: Path
    exact_guidance: tuple | None = None


_DATASETS: dict[str, Callable[..., RawSplits]] = {}


def register_dataset(fn):
    _DATASETS[fn.__name__] = fn
    return fn


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def build_raw(name: str, data_cfg, grid: int) -> RawSplits:
    if name not in _DATASETS:
        raise KeyError(f"unknown dataset {name!r}; valid datasets: {', '.join(list_datasets())}")
    return _DATASETS[name](data_cfg, grid)


@register_dataset
def synthetic(data_cfg, grid: int) -> RawSplits:
    """The embedded benchmark; writes its exact guidance in the released JSON format."""
    from rsexp.data.synthetic import CLASS_NAMES, load_or_generate

    train, val, cache = load_or_generate(
        data_cfg.synthetic, data_cfg.num_frames, data_cfg.frame_size, grid, data_cfg.root
    )
    frames = np.broadcast_to(np.arange(data_cfg.num_frames), (1, data_cfg.num_frames))
    splits = [
        (s.video_ids, s.videos, s.labels, np.repeat(frames, len(s.labels), axis=0))
        for s in (train, val)
    ]
    exact = (train.video_ids + val.video_ids, np.concatenate([train.cells, val.cells]))
    return RawSplits(
        splits[0],
        splits[1],
        list(CLASS_NAMES[: data_cfg.synthetic.num_classes]),
        cache / "guidance.json",
        cache,
        exact,
    )
