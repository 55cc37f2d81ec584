"""Small real video files for the tests, written with PyAV and read back with decord.

Frame ``i`` of every video is a flat grey of level ``level(i)``, so the mean of a
decoded frame says which frame it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np

CODECS = {".avi": "mpeg4", ".mp4": "libx264", ".webm": "libvpx-vp9"}


def level(i) -> np.ndarray:
    return 20 + 6 * np.asarray(i)


def write_video(path: Path, n: int = 30, hw=(48, 64), fps: int = 25, tint: int = 0) -> Path:
    """An n-frame video at ``path`` (codec from the suffix); ``tint`` shifts the red channel
    so that videos of different classes look different."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream(CODECS[path.suffix], rate=fps)
        s.width, s.height, s.pix_fmt = hw[1], hw[0], "yuv420p"
        for i in range(n):
            img = np.full((*hw, 3), level(i), dtype=np.uint8)
            img[..., 0] = np.clip(int(level(i)) + tint, 0, 255)
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def make_ucf50(root: Path, classes=("Biking", "Diving", "Punch"), groups=10, n=24) -> Path:
    """``<root>/ucf50/videos/<Class>/v_<Class>_gNN_c01.avi`` and a guidance JSON that
    marks cell (0, c) for class c on every third frame of each video."""
    base = root / "ucf50"
    guidance = {}
    for c, cls in enumerate(classes):
        for g in range(1, groups + 1):
            stem = f"v_{cls}_g{g:02d}_c01"
            write_video(base / "videos" / cls / f"{stem}.avi", n=n, tint=60 * c)
            region = json.dumps({"key_regions": [[0, c]]})
            guidance[stem] = {str(f): {"text": region} for f in range(0, n, 3)}
    (base / "guidance.json").write_text(json.dumps(guidance))
    return base


def segfault_on_boom(item: str):
    """A pool task that crashes its process on the item "boom", as a decoder segfault."""
    import os
    import signal

    if item == "boom":
        os.kill(os.getpid(), signal.SIGSEGV)
    return item, "ok", item.upper()
