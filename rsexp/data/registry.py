"""The name-keyed dataset registry, and where each real dataset is expected."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rsexp.core.registry import UnknownNameError
from rsexp.data.splits import Progress, RawSplits
from rsexp.errors import DatasetNotFoundError  # noqa: F401 (raised here)

_DATASETS: dict[str, Callable[..., RawSplits]] = {}


# Datasets whose videos hold several actions, labelled per frame: evaluated as action
# segmentation (frame-wise over whole videos, rsexp.data.windows).
SEGMENTATION_DATASETS = ("desktop_assembly",)

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
        "videos/<Class>/v_<Class>_gNN_cNN.avi and splits/{classInd,trainlist01,testlist01}.txt"
        " (the official ucfTrainTestlist files)",
    ),
    "ssv2": (
        "Something-Something v2 (Goyal et al., 2017), 174 classes",
        "https://developer.qualcomm.com/software/ai-datasets/something-something",
        "videos/<id>.webm and labels/{labels,train,validation}.json",
    ),
    "desktop_assembly": (
        "Desktop Assembly (Yuan et al., 2024)",
        "the dataset authors' release",
        "videos/<video>.mp4, groundTruth/<video>.txt (one action per frame), mapping.txt"
        " and splits/{train,test}.split1.bundle",
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


def check_dataset(data_cfg) -> None:
    """The dataset is one rsexp knows and its files are where the config says."""
    if data_cfg.name not in _DATASETS:
        raise UnknownNameError(
            f"data.name: unknown dataset {data_cfg.name!r}; valid datasets: "
            f"{', '.join(list_datasets())}"
        )
    check_available(data_cfg)


def register_dataset(fn=None, *, name: str | None = None):
    """Register a split builder under ``name`` (default: the function's name); a name
    registered twice is an error, as for models."""

    def add(f):
        key = name or f.__name__
        if key in _DATASETS:
            raise ValueError(f"dataset {key!r} is registered twice")
        _DATASETS[key] = f
        return f

    return add(fn) if fn is not None else add


def list_datasets() -> list[str]:
    return sorted(set(_DATASETS) | set(REAL_DATASETS))


def build_raw(name: str, data_cfg, grid: int, progress: Progress | None = None) -> RawSplits:
    """Both splits of dataset ``name``; real videos are decoded into the clip cache first
    (``progress`` reports that)."""
    check_dataset(data_cfg)
    return _DATASETS[name](data_cfg, grid, progress)
