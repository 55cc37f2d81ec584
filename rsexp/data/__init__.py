"""Datasets: a name-keyed registry of split builders (the synthetic benchmark and the
real video datasets), and the :class:`Split` they return before guidance is attached."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

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
    """

    ids: list[str]
    videos: np.ndarray | Sequence
    labels: np.ndarray
    frames: np.ndarray
    keys: list[str]
    choices: int = 1
    boxes: np.ndarray | None = None
    frame_hw: np.ndarray | None = None

    def guidance_masks(
        self, lookup: Callable[[str, np.ndarray], np.ndarray], grid: int, keep=None
    ) -> np.ndarray:
        """Masks [V, K, grid * grid] on the stored frames.

        Args:
            lookup: ``(key, frame_indices [K]) -> mask [K, grid * grid]`` on the full
                video frame (the guidance store's nearest-frame lookup).
            keep: guidance keys whose guidance is used (coverage); None = all.
        """
        import torch  # lazily: the spawned decoding workers import this package

        from rsexp.data.transforms import crop_mask

        out = np.zeros((len(self.ids), self.frames.shape[1], grid * grid), dtype=bool)
        for i, key in enumerate(self.keys):
            if keep is not None and key not in keep:
                continue
            mask = lookup(key, self.frames[i])
            if self.boxes is not None and mask.any():
                hw = tuple(int(x) for x in self.frame_hw[i])
                mask = crop_mask(torch.from_numpy(mask), tuple(self.boxes[i]), hw, grid).numpy()
            out[i] = mask
        return out


@dataclass
class RawSplits:
    """What a dataset builder returns: both splits, the class names, the dataset's
    guidance JSON and a digest of the data for provenance. ``exact_guidance``, for
    generated data only, is ``(video_ids, cells [V, T, g, g])`` for the experiment layer
    to write at ``guidance_path`` in the released format. ``skipped`` names the videos
    left out (``data.bad_videos=skip``) with their reasons."""

    train: Split
    val: Split
    class_names: list[str]
    guidance_path: Path
    digest: str
    exact_guidance: tuple | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    cache_dirs: list[Path] = field(default_factory=list)


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


def register_dataset(fn):
    _DATASETS[fn.__name__] = fn
    return fn


def list_datasets() -> list[str]:
    return sorted(set(_DATASETS) | set(REAL_DATASETS))


def build_raw(name: str, data_cfg, grid: int, progress: Progress | None = None) -> RawSplits:
    """Both splits of dataset ``name``; real videos are decoded into the clip cache first
    (``progress`` reports that)."""
    check_available(data_cfg)
    if name not in _DATASETS:
        raise KeyError(f"unknown dataset {name!r}; valid datasets: {', '.join(list_datasets())}")
    return _DATASETS[name](data_cfg, grid, progress)


@register_dataset
def synthetic(data_cfg, grid: int, progress: Progress | None = None) -> RawSplits:
    """The embedded benchmark; writes its exact guidance in the released JSON format."""
    from rsexp.data.synthetic import CLASS_NAMES, load_or_generate

    train, val, cache = load_or_generate(
        data_cfg.synthetic, data_cfg.num_frames, data_cfg.frame_size, grid, data_cfg.root
    )
    frames = np.arange(data_cfg.num_frames)[None]
    splits = [
        Split(s.video_ids, s.videos, s.labels, frames.repeat(len(s.labels), 0), s.video_ids)
        for s in (train, val)
    ]
    exact = (train.video_ids + val.video_ids, np.concatenate([train.cells, val.cells]))
    return RawSplits(
        splits[0],
        splits[1],
        list(CLASS_NAMES[: data_cfg.synthetic.num_classes]),
        cache / "guidance.json",
        cache.name,
        exact,
        cache_dirs=[cache],
    )


class VideoDecodeError(RuntimeError):
    """Videos of a split could not be decoded; names them and where the full list is."""


def _decode_split(name: str, split: str, entries, cache, workers: int, progress):
    """Decode ``entries`` into ``cache`` (what is cached already is kept)."""
    advance: list[Callable[[], None]] = []

    def on_start(n: int) -> None:
        if progress is not None and n:
            advance.append(progress(f"decoding {name} {split} ({n} clips)", n))

    return cache.prepare(
        entries, workers, on_start=on_start, on_clip=lambda: advance and advance[0]()
    )


def _cached_split(entries, cache, metas, num_frames: int) -> Split:
    """The split over the clips of ``entries`` that are in the cache."""
    from rsexp.data.video import CachedClips

    kept = [e for e in entries if e.clip_id in metas]
    m = [metas[e.clip_id] for e in kept]
    return Split(
        [e.clip_id for e in kept],
        CachedClips(cache.file(e.clip_id) for e in kept),
        np.array([e.label for e in kept], dtype=np.int64),
        np.array([x.frames for x in m], dtype=np.int64).reshape(len(kept), cache.k),
        [e.key for e in kept],
        choices=cache.k // num_frames,
        boxes=np.array([x.box for x in m], dtype=np.float64).reshape(len(kept), 4),
        frame_hw=np.array([x.hw for x in m], dtype=np.int64).reshape(len(kept), 2),
    )


def _build_real(name: str, data_cfg, grid: int, progress: Progress | None) -> RawSplits:
    """A real dataset: read its index, decode both splits into the clip cache.

    Training clips keep ``temporal_jitter`` candidate frames per segment at 8/7 of the
    frame size when augmenting (random resized crops are taken from the larger frame, as
    the usual 256 -> 224); validation clips keep the segment centres at the frame size.
    Both splits are decoded before ``data.bad_videos`` is applied, so one pass names
    every bad video.
    """
    from rsexp.data.real import INDEX_READERS
    from rsexp.data.video import ClipCache

    root = Path(data_cfg.root) / name
    index = INDEX_READERS[name](root, data_cfg.split)
    base = Path(data_cfg.cache_dir) if data_cfg.cache_dir else root / "cache"
    T, size = data_cfg.num_frames, data_cfg.frame_size
    train_size = round(size * 8 / 7) if data_cfg.augment else size
    caches = {
        "train": ClipCache(
            base, f"train{data_cfg.split}", T * data_cfg.temporal_jitter, train_size
        ),
        "val": ClipCache(base, f"val{data_cfg.split}", T, size),
    }
    entries = {"train": index.train, "val": index.val}
    decoded = {
        s: _decode_split(name, s, entries[s], caches[s], data_cfg.decode_workers, progress)
        for s in ("train", "val")
    }
    failures = {s: decoded[s][1] for s in decoded if decoded[s][1]}
    where = ", ".join(str(caches[s].root / "failures.json") for s in failures)
    if failures and data_cfg.bad_videos == "error":
        bad = sorted(set().union(*failures.values()))
        first = "\n".join(
            f"  {c}: {why}" for f in failures.values() for c, why in sorted(f.items())[:5]
        )
        counts = " and ".join(f"{len(f)} of {len(entries[s])} {s}" for s, f in failures.items())
        n_ok = sum(len(decoded[s][0]) for s in decoded)
        raise VideoDecodeError(
            f"{counts} clips of {name} could not be decoded ({len(bad)} in all):\n{first}\n"
            f"Full list: {where}. The {n_ok} decoded clips are cached under {base} and will "
            f"not be decoded again. Replace or remove the bad files and run again, or set "
            f"data.bad_videos=skip to train without them."
        )
    if failures:
        n = sum(map(len, failures.values()))
        warnings.warn(
            f"{name}: left out {n} clips that could not be decoded (data.bad_videos=skip); "
            f"see {where}",
            stacklevel=2,
        )
    splits = {s: _cached_split(entries[s], caches[s], decoded[s][0], T) for s in caches}
    for s, sp in splits.items():
        if not sp.ids:
            raise VideoDecodeError(f"{name} {s}: no clip could be decoded ({caches[s].root})")
    listing = "\n".join(
        f"{i}\t{y}" for sp in splits.values() for i, y in zip(sp.ids, sp.labels, strict=True)
    )
    digest = hashlib.sha1(f"{name}:{data_cfg.split}\n{listing}".encode()).hexdigest()[:12]
    skipped = {c: why for f in failures.values() for c, why in f.items()}
    return RawSplits(
        splits["train"],
        splits["val"],
        index.class_names,
        root / "guidance.json",
        digest,
        skipped=skipped,
        cache_dirs=[c.root for c in caches.values()],
    )


for _name in REAL_DATASETS:
    _DATASETS[_name] = partial(_build_real, _name)
