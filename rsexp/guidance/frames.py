"""What gets annotated: the frames of each training video behind the file's frame keys,
read from the video (decord, in this process: never in a forked worker), and the grid
image an LLM is shown."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from rsexp.config import parse_frame_keys

GUTTER = 6  # white px between grid cells (the released grid image)


@dataclass(frozen=True)
class FrameJob:
    """One frame to annotate: file key ``key`` of ``video`` is video frame ``frame``."""

    video: str
    key: int
    frame: int
    label: str


@dataclass(frozen=True)
class VideoSource:
    """A training video to annotate: its guidance key, its file (None for generated
    videos, whose frames are ``pixels``), and the label of each of its frames."""

    key: str
    path: Path | None
    labels: tuple[tuple[int, int | None, str], ...]  # (start, end, class name)
    pixels: np.ndarray | None = None  # [n, H, W, 3] generated frames

    def label_at(self, frame: int) -> str:
        for start, end, name in self.labels:
            if start <= frame and (end is None or frame < end):
                return name
        return self.labels[0][2]


def frame_keys_of(convention: str, positions: int, length: int, fps: float) -> list[tuple]:
    """``[(key, frame)]`` to annotate in an n-frame video: K positions at ``k * (n // K)``
    (``position``, and ``frame``, keyed by frame number), or every frame at r fps."""
    rate = parse_frame_keys(convention)
    if rate is None:
        step = length // positions
        frames = [k * step for k in range(positions)] if step else list(range(length))
        if convention == "frame":
            return [(f, f) for f in frames]
        return [(k, f) for k, f in enumerate(frames)] if step else []
    if fps <= 0:
        raise ValueError(f"frame_keys={convention}: the video's frame rate is unknown")
    out, k = [], 0
    while (f := round(k * fps / rate)) < length:
        out.append((k, f))
        k += 1
    return out


def frame_jobs(source: VideoSource, reader: VideoFrames, convention: str, positions: int):
    """The frames of ``source`` to annotate, as jobs."""
    return [
        FrameJob(source.key, k, f, source.label_at(f))
        for k, f in frame_keys_of(convention, positions, reader.length, reader.fps)
    ]


class VideoFrames:
    """Opens one video and reads the frames asked for (RGB uint8 [H, W, 3])."""

    def __init__(self, source: VideoSource):
        self.source = source
        if source.pixels is not None:
            self.length, self.fps, self._vr = len(source.pixels), 0.0, None
            return
        from decord import VideoReader, cpu

        self._vr = VideoReader(str(source.path), ctx=cpu(0), num_threads=1)
        self.length, self.fps = len(self._vr), float(self._vr.get_avg_fps())

    def read(self, frames: list[int]) -> np.ndarray:
        if self._vr is None:
            return self.source.pixels[frames]
        return self._vr.get_batch(frames).asnumpy()


def grid_image(frame: np.ndarray, grid: int, max_side: int, labelled: bool = False) -> bytes:
    """The frame cut into ``grid`` x ``grid`` cells separated by white gutters, its
    longer side at most ``max_side`` px, as JPEG bytes; ``labelled`` writes each cell's
    "row,col" in its corner."""
    img = Image.fromarray(frame)
    h, w = frame.shape[:2]
    scale = min(1.0, (max_side - GUTTER * (grid - 1)) / max(h, w))
    if scale < 1.0:
        img = img.resize((max(grid, round(w * scale)), max(grid, round(h * scale))))
    w, h = img.size
    ys = np.linspace(0, h, grid + 1).round().astype(int)
    xs = np.linspace(0, w, grid + 1).round().astype(int)
    out = Image.new("RGB", (w + GUTTER * (grid - 1), h + GUTTER * (grid - 1)), "white")
    draw = ImageDraw.Draw(out)
    for r in range(grid):
        for c in range(grid):
            cell = img.crop((xs[c], ys[r], xs[c + 1], ys[r + 1]))
            at = (xs[c] + GUTTER * c, ys[r] + GUTTER * r)
            out.paste(cell, at)
            if labelled:
                draw.rectangle((at[0], at[1], at[0] + 22, at[1] + 12), fill="white")
                draw.text((at[0] + 2, at[1]), f"{r},{c}", fill="black")
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=90)
    return buf.getvalue()
