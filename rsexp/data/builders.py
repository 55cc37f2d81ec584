"""The dataset builders: the embedded synthetic benchmark, and the real datasets
(index -> clip cache -> splits), registered by name."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from rsexp.config import ConfigError
from rsexp.data import own
from rsexp.data.registry import DATASETS, register_dataset
from rsexp.data.splits import Progress, RawSplits, Split, carve_val
from rsexp.errors import VideoDecodeError  # noqa: F401 (raised here)


@register_dataset(title="the embedded synthetic benchmark", files=False)
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


def _whole(entries) -> list:
    """One entry per video of ``entries`` (clips of one video share its key): the whole
    video, for frame-wise prediction."""
    from rsexp.data.video import VideoEntry

    videos = {}
    for e in entries:
        videos.setdefault(e.key, VideoEntry(e.key, e.path, -1, e.key))
    return list(videos.values())


def _ground_truth(root: Path, index) -> Callable[[str, int], np.ndarray]:
    """``(video, frame_count) -> [frame_count]`` true labels per frame, from the index's
    action segments of that video. A ground truth whose length differs from the video's
    frame count by more than max(5 frames, 1 %) is an error naming its file; within
    that, the last label is held (or the surplus dropped)."""
    from rsexp.data.real import DatasetLayoutError

    segments: dict[str, list] = {}
    for e in [*index.train, *index.val]:
        segments.setdefault(e.key, []).append(e)

    def labels(video: str, n: int) -> np.ndarray:
        segs = sorted(segments[video], key=lambda e: e.start)
        gt = np.concatenate([np.full(e.end - e.start, e.label) for e in segs])
        if abs(len(gt) - n) > max(5, 0.01 * n):
            raise DatasetLayoutError(
                f"{root / 'groundTruth' / f'{video}.txt'}: {len(gt)} lines (one per frame) "
                f"but the video {segs[0].path} has {n} frames"
            )
        return np.r_[gt, np.full(max(0, n - len(gt)), gt[-1])][:n].astype(np.int64)

    return labels


def _window_split(entries, cache, metas, data_cfg, rule: str, ground_truth) -> Split:
    """Windows of the cached whole videos of ``entries`` (see :mod:`rsexp.data.windows`)."""
    from rsexp.data.windows import WindowClips, WindowIndex, window_label, window_starts

    T, stride = data_cfg.num_frames, data_cfg.window_stride
    kept = [e for e in entries if e.clip_id in metas]
    keys, files, per_video, video, start = [], [], [], [], []
    ids, labels, frames, rows = [], [], [], []
    for v, e in enumerate(kept):
        m = metas[e.clip_id]
        stored = np.asarray(m.frames, dtype=np.int64)  # video frame of each stored frame
        truth = ground_truth(e.key, m.length)[stored]
        keys.append(e.key)
        files.append(cache.file(e.clip_id))
        per_video.append(truth)
        for s in window_starts(len(stored), T, stride).tolist():
            video.append(v)
            start.append(s)
            ids.append(f"{e.key}@w{s}")
            labels.append(window_label(truth, s, T, rule))
            frames.append(stored[np.minimum(s + np.arange(T), len(stored) - 1)])
            rows.append(m)
    index = WindowIndex(keys, per_video, np.array(video), np.array(start), T)
    return Split(
        ids,
        WindowClips(files, index),
        np.array(labels, dtype=np.int64),
        np.array(frames, dtype=np.int64).reshape(len(ids), T),
        [keys[v] for v in video],
        choices=1,
        boxes=np.array([m.box for m in rows], dtype=np.float64).reshape(len(ids), 4),
        frame_hw=np.array([m.hw for m in rows], dtype=np.int64).reshape(len(ids), 2),
        lengths=np.array([m.length for m in rows], dtype=np.int64),
        fps=np.array([m.fps for m in rows], dtype=np.float64),
        windows=index,
    )


def read_split(name: str, data_cfg) -> tuple:
    """A dataset's index with its training side split as every run splits it:
    ``(root, index, train, val)``. The validation split is the one the layout gives (a
    ``val/`` folder, a list), else carved whole by group (UCF's actor groups,
    ``data.group_by``, else the video), seeded; ``data.val_fraction=0`` trains on all of
    it (``rsexp guidance`` selects its videos from the same sides)."""
    from rsexp.data.real import DatasetLayoutError

    spec = DATASETS.get(name)
    if spec.index is None:
        raise DatasetLayoutError(
            f"{name}: its dataset spec gives no index of videos (register_dataset(index=...)),"
            f" which the clip cache and rsexp guidance read"
        )
    root, index, given_val = spec.index(data_cfg)
    for side, listed in (("training", index.train), ("evaluation", index.val)):
        if not listed:
            raise DatasetLayoutError(
                f"{name} split {data_cfg.split}: the {side} side lists no video; check the "
                f"split files under {root} or choose another data.split"
            )
    if given_val is not None:
        if data_cfg.val_fraction == 0:  # the whole training side, validation included
            return root, index, index.train + given_val, []
        return root, index, index.train, given_val
    group = (spec.groups(data_cfg, root) if spec.groups else None) or _video
    try:
        train, val = carve_val(index.train, data_cfg.val_fraction, data_cfg.val_seed, group)
    except ValueError as e:
        raise DatasetLayoutError(f"{name} split {data_cfg.split}: {e}") from None
    return root, index, train, val


def _build_real(name: str, data_cfg, grid: int, progress: Progress | None) -> RawSplits:
    """A real dataset: read its index, decode both splits into the clip cache.

    Training clips keep ``temporal_jitter`` candidate frames per segment at 8/7 of the
    frame size when augmenting (random resized crops are taken from the larger frame, as
    the usual 256 -> 224); validation clips keep the segment centres at the frame size.
    Both splits are decoded before ``data.bad_videos`` is applied, so one pass names
    every bad video.
    """
    from rsexp.data.cache import ClipCache

    root, index, train, val = read_split(name, data_cfg)
    seg = DATASETS.get(name).segmentation
    if data_cfg.sample == "windows" and not seg:
        per_frame = [s.name for s in DATASETS if s.segmentation]
        raise ConfigError(
            f"data.sample=windows: {name} is not labelled per frame; windows are for "
            f"{', '.join(per_frame)}"
        )
    base = Path(data_cfg.cache_dir) if data_cfg.cache_dir else root / DATASETS.get(name).cache
    T, size, fmt, rate = data_cfg.num_frames, data_cfg.frame_size, data_cfg.cache_format, 0.0
    train_size = round(size * 8 / 7) if data_cfg.augment else size
    k = data_cfg.split
    # what each split is made of: clips (segment centres, or temporal-jitter candidates
    # for training at the crop size), or, for action segmentation, whole videos at
    # segmentation_fps cut into windows (validation and test always, training with
    # data.sample=windows). Validation and test share one folder: changing val_fraction
    # decodes nothing.
    if seg:
        rate = data_cfg.segmentation_fps
    whole_train = seg and data_cfg.sample == "windows"
    caches = {
        "train": ClipCache(base, f"frames-train{k}", 0, train_size, fmt, rate)
        if whole_train
        else ClipCache(base, f"train{k}", T * data_cfg.temporal_jitter, train_size, fmt),
        "eval": ClipCache(base, f"frames-eval{k}", 0, size, fmt, rate)
        if seg
        else ClipCache(base, f"eval{k}", T, size, fmt),
    }
    entries = {
        "train": _whole(train) if whole_train else train,
        "val": _whole(val) if seg else val,
        "test": _whole(index.val) if seg else index.val,
    }
    decoded = {
        "train": _decode_split(
            name, "train", entries["train"], caches["train"], data_cfg.decode_workers, progress
        ),
        "eval": _decode_split(
            name,
            "val/test",
            entries["val"] + entries["test"],
            caches["eval"],
            data_cfg.decode_workers,
            progress,
        ),
    }
    failures = {s: decoded[s][1] for s in decoded if decoded[s][1]}
    where = ", ".join(str(caches[s].root / "failures.json") for s in failures)
    sizes = {"train": len(entries["train"]), "eval": len(entries["val"]) + len(entries["test"])}
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
    ground_truth = _ground_truth(root, index) if seg else None
    splits = {}
    for s in entries:
        if not entries[s]:
            continue
        cache, metas = caches[cache_of[s]], decoded[cache_of[s]][0]
        if cache.rate:
            rule = data_cfg.window_label if s == "train" else "centre"
            splits[s] = _window_split(entries[s], cache, metas, data_cfg, rule, ground_truth)
        else:
            splits[s] = _cached_split(entries[s], cache, metas, T)
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


def _paper_index(name: str, data_cfg) -> tuple:
    """The paper's datasets: their own index files under ``<data.root>/<name>/``."""
    from rsexp.data.real import INDEX_READERS

    root = Path(data_cfg.root) / name
    return root, INDEX_READERS[name](root, data_cfg.split), None


def _ucf_groups(data_cfg, root) -> Callable:
    return _ucf_group


# the real datasets: where each is expected under data.root, and how to get it there
REAL = {
    "ucf50": dict(
        title="UCF50 (Reddy & Shah, 2013), 50 classes",
        source="https://www.crcv.ucf.edu/data/UCF50.php (UCF50.rar)",
        layout="videos/<Class>/v_<Class>_gNN_cNN.avi",
    ),
    "ucf101": dict(
        title="UCF101 (Soomro et al., 2012), 101 classes",
        source="https://www.crcv.ucf.edu/data/UCF101.php (UCF101.rar + train/test splits)",
        layout="videos/<Class>/v_<Class>_gNN_cNN.avi and splits/{classInd,trainlist01,"
        "testlist01}.txt (the official ucfTrainTestlist files)",
    ),
    "ssv2": dict(
        title="Something-Something v2 (Goyal et al., 2017), 174 classes",
        source="https://developer.qualcomm.com/software/ai-datasets/something-something",
        layout="videos/<id>.webm and labels/{labels,train,validation}.json",
    ),
    "desktop_assembly": dict(
        title="Desktop Assembly (Yuan et al., 2024)",
        source="the dataset authors' release",
        layout="videos/<video>.mp4, groundTruth/<video>.txt (one action per frame), "
        "mapping.txt and splits/{train,test}.split1.bundle",
        # its videos hold several actions, labelled per frame: evaluated as action
        # segmentation (frame-wise over whole videos, rsexp.data.windows)
        segmentation=True,
    ),
}
for _name, _facts in REAL.items():
    register_dataset(
        partial(_build_real, _name), name=_name, index=partial(_paper_index, _name),
        groups=_ucf_groups if _name.startswith("ucf") else None, **_facts,
    )  # fmt: skip

# your own videos (rsexp.data.own): a class-per-folder tree, list files, videos labelled
# per frame; the clip cache beside them, in a folder of rsexp's own
OWN = {
    "folder": dict(title="your videos, a folder per class", index=own.folder,
                   layout="<data.path>/<class>/<video> or <data.path>/{train,val,test}/"
                          "<class>/<video>"),
    "list": dict(title="your videos, listed in files", index=own.listed,
                 layout="data.train_list / data.test_list: 'relative/path label' lines or "
                        "a CSV path,label[,split], paths relative to <data.path>"),
    "segments": dict(title="your videos, labelled per frame", index=own.segments,
                     segmentation=True,
                     layout="<data.path>/videos/<video>, groundTruth/<video>.txt, "
                            "mapping.txt [and splits/{train,test}.split<k>.bundle]"),
}  # fmt: skip
for _name, _facts in OWN.items():
    register_dataset(
        partial(_build_real, _name), name=_name, source="your own", cache=".rsexp/cache",
        groups=own.group_of, check=own.root_of, **_facts,
    )  # fmt: skip
