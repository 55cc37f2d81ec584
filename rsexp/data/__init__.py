"""Datasets: a name-keyed registry of split builders (the synthetic benchmark and the
real video datasets), and the :class:`Split` they return before guidance is attached.

- :mod:`~rsexp.data.registry`: ``register_dataset``, ``build_raw``, where data is expected
- :mod:`~rsexp.data.splits`: ``Split``, ``RawSplits``
- :mod:`~rsexp.data.builders`: the registered builders (synthetic, UCF50/101, SSv2, DA)
- :mod:`~rsexp.data.real`: index readers; :mod:`~rsexp.data.video`: decoding, clip cache
"""

from rsexp.data.builders import VideoDecodeError
from rsexp.data.registry import (
    DATASETS,
    DatasetNotFoundError,
    DatasetSpec,
    build_raw,
    check_available,
    dataset_spec,
    is_segmentation,
    list_datasets,
    register_dataset,
)
from rsexp.data.splits import RawSplits, Split

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "dataset_spec",
    "is_segmentation",
    "DatasetNotFoundError",
    "RawSplits",
    "Split",
    "VideoDecodeError",
    "build_raw",
    "check_available",
    "list_datasets",
    "register_dataset",
]
