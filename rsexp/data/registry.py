"""The name-keyed dataset registry, and where each real dataset is expected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from rsexp.core.registry import Registry, UnknownNameError  # noqa: F401
from rsexp.data.splits import Progress, RawSplits
from rsexp.errors import DatasetNotFoundError  # noqa: F401 (raised here)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset rsexp can train on.

    The contract of ``build``: ``build(data_cfg, grid, progress=None) -> RawSplits``:
    the training split, the validation split carved from the training side (None when
    ``data.val_fraction`` is 0), the test split (the official evaluation side, or None),
    the class names, where its guidance file is, a digest of its index; real videos are
    decoded into the clip cache first (``progress`` reports that). ``files``: it is read
    from ``data.root/<name>/`` (``title``, ``source`` and ``layout`` say what and where);
    ``segmentation``: labelled per frame, evaluated frame-wise over whole videos.
    """

    name: str
    build: Callable[..., RawSplits]
    title: str = ""
    source: str = ""
    layout: str = ""
    files: bool = True
    segmentation: bool = False
    origin: str = "rsexp"  # who registered it (a plugin's module)
    # datasets of videos on disk: ``index(data_cfg) -> (root, VideoIndex, val or None)``
    # (the training and test sides, a validation side the layout gives), the group of a
    # video that a split keeps whole (``groups(data_cfg, root)``, None: the video), the
    # clip cache's folder under the root, and the check that the data is where the
    # config says (default: ``<data.root>/<name>/videos/``)
    index: Callable | None = None
    groups: Callable | None = None
    cache: str = "cache"
    check: Callable | None = None


DATASETS: Registry[DatasetSpec] = Registry("dataset", "data.name")


def check_available(data_cfg) -> None:
    """Stop at once, saying where the data is expected and how to get it, when a
    dataset read from files is missing (the embedded synthetic data is always there)."""
    spec = DATASETS.get(data_cfg.name)
    if not spec.files:
        return
    if spec.check is not None:
        spec.check(data_cfg)
        return
    root = Path(data_cfg.root) / data_cfg.name
    if not (root / "videos").is_dir():
        raise DatasetNotFoundError(
            f"{spec.title} is not at {root}/. Expected layout: {root}/{spec.layout}, with "
            f"the guidance JSON (the authors' released format) at {root}/guidance.json. Get "
            f"the videos from {spec.source}, unpack them into {root}/videos/, then run the "
            f"same command again (or set data.root=<folder holding {data_cfg.name}/>). "
            f"Without data, `make sweep` runs on the embedded synthetic dataset."
        )


def check_dataset(data_cfg) -> None:
    """The dataset is one rsexp knows and its files are where the config says."""
    DATASETS.get(data_cfg.name)
    check_available(data_cfg)


def register_dataset(
    fn=None,
    *,
    name: str | None = None,
    title: str = "",
    source: str = "",
    layout: str = "",
    files: bool = True,
    segmentation: bool = False,
    index: Callable | None = None,
    groups: Callable | None = None,
    cache: str = "cache",
    check: Callable | None = None,
):
    """Register a split builder under ``name`` (default: the function's name) with its
    facts; a name registered twice is an error, as for models."""

    def add(f):
        key = name or f.__name__
        module = f.func.__module__ if isinstance(f, partial) else f.__module__
        DATASETS.add(
            key, DatasetSpec(key, f, title or key, source, layout, files, segmentation,
                             (module or "rsexp").split(".")[0], index, groups, cache, check)
        )  # fmt: skip
        return f

    return add(fn) if fn is not None else add


def list_datasets() -> list[str]:
    return DATASETS.names()


def dataset_spec(name: str) -> DatasetSpec:
    return DATASETS.get(name)


def is_segmentation(name: str) -> bool:
    return name in DATASETS and DATASETS.get(name).segmentation


def build_raw(name: str, data_cfg, grid: int, progress: Progress | None = None) -> RawSplits:
    """Both splits of dataset ``name``; real videos are decoded into the clip cache first
    (``progress`` reports that)."""
    check_dataset(data_cfg)
    return DATASETS.get(name).build(data_cfg, grid, progress)
