"""The dataset builders: the embedded synthetic benchmark, and the real datasets
(index -> clip cache -> splits), registered by name."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from rsexp.data.registry import REAL_DATASETS, register_dataset
from rsexp.data.splits import Progress, RawSplits, Split, carve_val


@register_dataset
def synthetic(data_cfg, grid: int, progress: Progress | None = None) -> RawSplits:
    """The embedded benchmark; writes its exact guidance in the released JSON format.
    Its validation set is generated held-out data (``data.val_fraction=0`` leaves it out:
    its training set is already the whole training side). Its test set is generated
    from a seed stream of its own."""
    from rsexp.data.synthetic import CLASS_NAMES, load_or_generate

    gen, cache = load_or_generate(
        data_cfg.synthetic, data_cfg.num_frames, data_cfg.frame_size, grid, data_cfg.root
    )
    frames = np.arange(data_cfg.num_frames)[None]
    # each generated video is its num_frames frames (no frame rate)
    splits = {
        name: Split(
            s.video_ids,
            s.videos,
            s.labels,
            frames.repeat(len(s.labels), 0),
            s.video_ids,
            lengths=np.full(len(s.labels), data_cfg.num_frames),
        )
        for name, s in gen.items()
    }
    if data_cfg.val_fraction == 0:
        del splits["val"]
    exact = (
        [i for s in gen.values() for i in s.video_ids],
        np.concatenate([s.cells for s in gen.values()]),
    )
    return RawSplits(
        train=splits["train"],
        val=splits.get("val"),
        test=splits.get("test"),
        class_names=list(CLASS_NAMES[: data_cfg.synthetic.num_classes]),
        guidance_path=cache / "guidance.json",
        digest=cache.name,
        exact_guidance=exact,
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
    from rsexp.data.cache import CachedClips

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
        lengths=np.array([x.length for x in m], dtype=np.int64),
        fps=np.array([x.fps for x in m], dtype=np.float64),
    )


def _build_real(name: str, data_cfg, grid: int, progress: Progress | None) -> RawSplits:
    """A real dataset: read its index, decode both splits into the clip cache.

    Training clips keep ``temporal_jitter`` candidate frames per segment at 8/7 of the
    frame size when augmenting (random resized crops are taken from the larger frame, as
    the usual 256 -> 224); validation clips keep the segment centres at the frame size.
    Both splits are decoded before ``data.bad_videos`` is applied, so one pass names
    every bad video.
    """
    from rsexp.data.cache import ClipCache
    from rsexp.data.real import INDEX_READERS, DatasetLayoutError

    root = Path(data_cfg.root) / name
    index = INDEX_READERS[name](root, data_cfg.split)
    for side, listed in (("training", index.train), ("evaluation", index.val)):
        if not listed:
            raise DatasetLayoutError(
                f"{name} split {data_cfg.split}: the {side} side lists no video; check the "
                f"split files under {root} or choose another data.split"
            )
    try:
        train, val = carve_val(
            index.train, data_cfg.val_fraction, data_cfg.val_seed, VAL_GROUP.get(name, _video)
        )
    except ValueError as e:
        raise DatasetLayoutError(f"{name} split {data_cfg.split}: {e}") from None
    entries = {"train": train, "val": val, "test": index.val}
    base = Path(data_cfg.cache_dir) if data_cfg.cache_dir else root / "cache"
    T, size = data_cfg.num_frames, data_cfg.frame_size
    train_size = round(size * 8 / 7) if data_cfg.augment else size
    # training clips keep the candidate frames for temporal jitter at the crop size;
    # validation and test clips (one folder: changing val_fraction decodes nothing)
    # keep the segment centres at the frame size
    caches = {
        "train": ClipCache(
            base,
            f"train{data_cfg.split}",
            T * data_cfg.temporal_jitter,
            train_size,
            data_cfg.cache_format,
        ),
        "eval": ClipCache(base, f"eval{data_cfg.split}", T, size, data_cfg.cache_format),
    }
    decoded = {
        "train": _decode_split(
            name, "train", train, caches["train"], data_cfg.decode_workers, progress
        ),
        "eval": _decode_split(
            name, "val/test", val + index.val, caches["eval"], data_cfg.decode_workers, progress
        ),
    }
    failures = {s: decoded[s][1] for s in decoded if decoded[s][1]}
    where = ", ".join(str(caches[s].root / "failures.json") for s in failures)
    sizes = {"train": len(train), "eval": len(val) + len(index.val)}
    if failures and data_cfg.bad_videos == "error":
        bad = sorted(set().union(*failures.values()))
        first = "\n".join(
            f"  {c}: {why}" for f in failures.values() for c, why in sorted(f.items())[:5]
        )
        counts = " and ".join(f"{len(f)} of {sizes[s]} {s}" for s, f in failures.items())
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
    cache_of = {"train": "train", "val": "eval", "test": "eval"}
    splits = {
        s: _cached_split(entries[s], caches[cache_of[s]], decoded[cache_of[s]][0], T)
        for s in entries
        if entries[s]
    }
    for s, sp in splits.items():
        if not sp.ids:
            raise VideoDecodeError(
                f"{name} {s}: no clip could be decoded ({caches[cache_of[s]].root})"
            )
    listing = "\n".join(
        f"{s}\t{i}\t{y}"
        for s, sp in splits.items()
        for i, y in zip(sp.ids, sp.labels, strict=True)
    )
    digest = hashlib.sha1(f"{name}:{data_cfg.split}\n{listing}".encode()).hexdigest()[:12]
    skipped = {c: why for f in failures.values() for c, why in f.items()}
    return RawSplits(
        train=splits["train"],
        val=splits.get("val"),
        test=splits["test"],
        class_names=index.class_names,
        guidance_path=root / "guidance.json",
        digest=digest,
        skipped=skipped,
        cache_dirs=[c.root for c in caches.values()],
    )


def _video(entry) -> str:
    return entry.key


def _ucf_group(entry) -> str:
    """The actor group of a UCF clip (``v_<Class>_g<NN>_c<NN>``): clips of one group share
    actors and scenes, so a validation split takes whole groups."""
    return entry.key.rsplit("_g", 1)[-1].split("_")[0]


VAL_GROUP = {"ucf50": _ucf_group, "ucf101": _ucf_group}


for _name in REAL_DATASETS:
    register_dataset(partial(_build_real, _name), name=_name)
