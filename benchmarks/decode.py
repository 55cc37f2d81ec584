"""How long does preparing a real dataset take, and how fast is training input after it?

Writes UCF-like videos (320 x 240, 25 fps, MPEG-4 in AVI, moving texture), then times
(1) decoding them into the clip cache with 1 and with all decoding processes (the
time to the first clip, then the steady rate), for the
training cache (16 frames at 256 px: 8 segments x 2 candidates, the UCF50 sweep config)
and the validation cache (8 frames at 224 px), and (2) reading augmented 224-px training
clips back out of the cache. Prints clips/s, cache size per clip and the extrapolation
to UCF50 (6,676 videos) and UCF101 (13,320 videos).

    python benchmarks/decode.py [--videos 48] [--frames 180]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import av
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from rsexp.data.cache import CachedClips, ClipCache
from rsexp.data.dataset import ClipDataset
from rsexp.data.transforms import SpatialAugment
from rsexp.data.video import VideoEntry


def write_ucf_like(
    path: Path, frames: int, seed: int, size=(320, 240), bit_rate: int = 600_000
) -> None:
    """An MPEG-4 video at 25 fps of a random texture sliding by one pixel per frame."""
    w, h = size
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 255, (h, 2 * w, 3), dtype=np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt, s.bit_rate = w, h, "yuv420p", bit_rate
        for i in range(frames):
            img = np.ascontiguousarray(texture[:, i % w : i % w + w])
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def stamp(times: list[float]) -> None:
    times.append(time.perf_counter())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=48)
    ap.add_argument("--frames", type=int, default=180, help="frames per video (UCF: ~180)")
    args = ap.parse_args(argv)
    console = Console(width=120)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        entries = []
        for i in range(args.videos):
            path = tmp / "videos" / f"v_X_g{i % 25 + 1:02d}_c{i:02d}.avi"
            path.parent.mkdir(exist_ok=True)
            write_ucf_like(path, args.frames, i)
            entries.append(VideoEntry(path.stem, path, 0, path.stem))
        mb = sum(e.path.stat().st_size for e in entries) / len(entries) / 1e6
        console.print(
            f"wrote {args.videos} videos ({args.frames} frames, 320x240, {mb:.2f} MB each) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        table = Table(title=f"decoding into the clip cache ({cores} cores)")
        cols = ("cache", "format", "processes", "start s", "clips/s", "MB/clip", "UCF50", "UCF101")
        for col in cols:
            table.add_column(col, justify="right")
        runs = [("train", 16, 256, "jpeg", w) for w in sorted({1, cores})]
        runs += [("train", 16, 256, "npy", 1), ("val", 8, 224, "jpeg", cores)]
        for split, k, size, fmt, workers in runs:
            cache = ClipCache(tmp / f"cache-{workers}", split, k, size, fmt)
            t0, ends = time.perf_counter(), []
            metas, failures = cache.prepare(entries, workers=workers, on_clip=partial(stamp, ends))
            assert not failures and len(metas) == len(entries), failures
            # steady state: a spawned process first imports the main module (torch, ...)
            rate = (len(ends) - 1) / (ends[-1] - ends[0])
            per_clip = cache.file(entries[0].clip_id).stat().st_size / 1e6
            table.add_row(
                f"{split}: {k} x {size} px",
                fmt,
                str(workers),
                f"{ends[0] - t0:.1f}",
                f"{rate:.1f}",
                f"{per_clip:.2f}",
                f"{6676 / rate / 60:.0f} min, {6676 * per_clip / 1e3:.1f} GB",
                f"{13320 / rate / 60:.0f} min, {13320 * per_clip / 1e3:.1f} GB",
            )
        console.print(table)
        torch.set_num_threads(1)
        for fmt in ("jpeg", "npy"):
            cache = ClipCache(tmp / "cache-1", "train", 16, 256, fmt)
            ds = ClipDataset(
                [e.clip_id for e in entries],
                CachedClips(cache.file(e.clip_id) for e in entries),
                np.zeros(len(entries)),
                np.zeros((len(entries), 16, 16), bool),
                choices=2,
                augment=SpatialAugment(224, 4),
                train=True,
            )
            t0 = time.perf_counter()
            for i in range(len(ds)):
                item = ds[i]
            dt = time.perf_counter() - t0
            assert item["video"].shape == (8, 3, 224, 224)
            console.print(
                f"training input from the {fmt} cache (8 x 224 px, random resized crop + "
                f"flip, one process, one thread): {len(ds) / dt:.1f} clips/s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
