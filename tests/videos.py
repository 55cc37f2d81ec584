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
    """``<root>/ucf50/videos/<Class>/v_<Class>_gNN_c01.avi`` and a guidance JSON in the
    released format (keys "0".."9": positions k * (n // 10)) that marks cell (0, c) for
    class c."""
    base = root / "ucf50"
    guidance = {}
    for c, cls in enumerate(classes):
        for g in range(1, groups + 1):
            stem = f"v_{cls}_g{g:02d}_c01"
            write_video(base / "videos" / cls / f"{stem}.avi", n=n, tint=60 * c)
            region = json.dumps({"key_regions": [[0, c]]})
            guidance[stem] = {str(k): {"text": region} for k in range(10)}
    (base / "guidance.json").write_text(json.dumps(guidance))
    return base


def segfault_on_boom(item: str):
    """A pool task that crashes its process on the item "boom", as a decoder segfault."""
    import os
    import signal

    if item == "boom":
        os.kill(os.getpid(), signal.SIGSEGV)
    return item, "ok", item.upper()


def make_desktop_assembly(root: Path) -> Path:
    """Three 60-frame videos of three actions each, in the action-segmentation layout:
    two train (one held out for validation), one test."""
    base = root / "desktop_assembly"
    (base / "groundTruth").mkdir(parents=True)
    (base / "splits").mkdir()
    actions = ["background", "pick_screwdriver", "place_lid"]
    (base / "mapping.txt").write_text("".join(f"{i} {a}\n" for i, a in enumerate(actions)))
    guidance = {}
    for v in ("2020-03-07_desk07", "2020-03-07_desk09", "2020-03-08_desk02"):
        write_video(base / "videos" / f"{v}.mp4", n=60, hw=(48, 64))
        seq = [actions[min(i // 20, 2)] for i in range(60)]
        (base / "groundTruth" / f"{v}.txt").write_text("\n".join(seq) + "\n")
        region = json.dumps({"key_regions": [[1, 1]]})
        # keyed at 10 fps (the paper's, and sweeps/desktop_assembly.yaml's frame_keys):
        # key k is frame round(k * 25 / 10) of the 25 fps video
        guidance[v] = {str(k): {"text": region} for k in range(24)}
    (base / "splits" / "train.split1.bundle").write_text(
        "2020-03-07_desk07.txt\n2020-03-07_desk09.txt\n"
    )
    (base / "splits" / "test.split1.bundle").write_text("2020-03-08_desk02.txt\n")
    (base / "guidance.json").write_text(json.dumps(guidance))
    return base


ROOT = Path(__file__).resolve().parents[1]
# the smallest TSViT a real-layout run trains in seconds
TINY_TSVIT = [
    "model.name=tsvit",
    "model.embed_dim=16",
    "model.depth=1",
    "model.temporal_depth=1",
    "model.num_heads=2",
]


def real_cfg(tmp_path, *extra, dataset="ucf50"):
    """``sweeps/<dataset>.yaml`` on the generated data under ``tmp_path``, 4 frames of
    16 px, decoded in this process."""
    from rsexp.config import load_config

    return load_config(
        ROOT / "sweeps" / f"{dataset}.yaml",
        [
            f"data.root={tmp_path / 'data'}",
            "data.num_frames=4",
            "data.frame_size=16",
            "data.decode_workers=1",
            *extra,
        ],
    )
