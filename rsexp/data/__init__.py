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


class DatasetNotFoundError(FileNotFoundError):
    """A real dataset is not where the config says; the message says how to get it."""


# Where each real dataset is expected under data.root, and how to get it there.
REAL_DATASETS = {
    "ucf50": (
        "UCF50 (Reddy & Shah, 2013), 50 classes",
        "https://www.crcv.ucf.edu/data/UCF50.php (UCF50.rar)",
        "videos/<Class>/v_<Class>_gNN_cNN.avi",
    ),
    "ucf101": (
        "UCF101 (Soomro et al., 2012), 101 classes",
        "https://www.crcv.ucf.edu/data/UCF101.php (UCF101.rar + train/test splits)",
        "videos/<Class>/v_<Class>_gNN_cNN.avi and splits/{trainlist01,testlist01}.txt",
    ),
    "ssv2": (
        "Something-Something v2 (Goyal et al., 2017), 174 classes",
        "https://developer.qualcomm.com/software/ai-datasets/something-something",
        "videos/<id>.webm and labels/{train,validation,labels}.json",
    ),
    "desktop_assembly": (
        "Desktop Assembly (Yuan et al., 2024)",
        "the dataset authors' release",
        "videos/<video>.mp4 and annotations/",
    ),
}


def check_available(data_cfg) -> None:
    """Stop at once, saying where the data is expected and how to get it, when a real
    dataset is missing (the embedded synthetic data is always available)."""
    if data_cfg.name not in REAL_DATASETS:
        return
    title, source, layout = REAL_DATASETS[data_cfg.name]
    root = Path(data_cfg.root) / data_cfg.name
    if not (root / "videos").is_dir():
        raise DatasetNotFoundError(
            f"{title} is not at {root}/. Expected layout: {root}/{layout}, with the "
            f"guidance JSON (the authors' released format) at {root}/guidance.json. Get the "
            f"videos from {source}, unpack them into {root}/videos/, then run the same "
            f"command again (or set data.root=<folder holding {data_cfg.name}/>). "
            f"Without data, `make sweep` runs on the embedded synthetic dataset."
        )
    raise DatasetNotFoundError(
        f"{root}/videos/ exists, but decoding {title} with decord is not part of this "
        f"release yet; only the embedded synthetic dataset trains today."
    )


def register_dataset(fn):
    _DATASETS[fn.__name__] = fn
    return fn


def list_datasets() -> list[str]:
    return sorted(set(_DATASETS) | set(REAL_DATASETS))


def build_raw(name: str, data_cfg, grid: int) -> RawSplits:
    check_available(data_cfg)
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
