"""Reading real videos with decord, clip sampling, and the decoded-clip cache.

Real videos are decoded once, before training, into a per-split cache: per clip,
``K = num_frames * temporal_jitter`` frames at the centres of ``K`` equal segments,
short side resized to ``S`` and centre-cropped, stored as JPEGs or raw uint8 arrays.
Training then reads those files: no video decoder runs in a DataLoader worker, which
sidesteps decord's hang when a ``VideoReader`` made before the fork is used in the
child, and no epoch decodes video again.

Decoding runs in a pool of processes from a fork server that has imported only the
decoding code (each process opens its own readers); the cache itself is
:mod:`rsexp.data.cache`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

VIDEO_EXTENSIONS = (".avi", ".mp4", ".webm", ".mkv", ".mov")


class BadVideoError(ValueError):
    """A video that cannot give a clip; the message names the file and the reason."""


@dataclass(frozen=True)
class VideoEntry:
    """One clip of a real dataset, as its index file describes it.

    ``key`` is the video's id in the guidance JSON (the file stem for UCF, the numeric id
    for SSv2); ``clip_id`` is unique per clip and equals ``key`` unless the clip is one
    segment of a longer video (Desktop Assembly). ``start``/``end`` bound the clip in
    the video's frames (``end=None``: to the last frame).
    """

    clip_id: str
    path: Path
    label: int
    key: str
    start: int = 0
    end: int | None = None


@dataclass(frozen=True)
class ClipMeta:
    """What the cache records for a decoded clip: the video frames it holds (indices into
    the video, for the guidance lookup) and the crop that maps the full frame onto the
    stored square, (y0, x0, h, w) in pixels of the ``hw`` = (H, W) frame."""

    clip_id: str
    frames: tuple[int, ...]
    box: tuple[float, float, float, float]
    hw: tuple[int, int]
    source: tuple[int, int] = (0, 0)  # the video file's (size, mtime_ns) when decoded
    length: int = 0  # the video's frame count (guidance frame keys by position)
    fps: float = 0.0  # its frame rate (guidance frame keys at fps:<r>)


def source_id(path: Path) -> tuple[int, int]:
    """What identifies a video file's content cheaply: (size, mtime in ns). A replaced,
    re-encoded or touched file gets a new id and is decoded again."""
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def segment_centres(start: int, end: int, k: int) -> np.ndarray:
    """Frame indices [k] at the centres of k equal segments of ``[start, end)`` (TSN's
    test-time sampling); a clip shorter than k frames repeats frames."""
    if end <= start:
        raise ValueError(f"empty frame range [{start}, {end})")
    pos = start + (np.arange(k) + 0.5) * (end - start) / k
    return np.minimum(pos.astype(np.int64), end - 1)


def avi_truncation(path: Path) -> str | None:
    """Why an AVI file is truncated, or None when its RIFF size matches the file.

    decord opens a truncated AVI without complaint and returns a garbage last frame (the
    last packet is partial), and the frames that are gone are simply not counted, so the
    clip would silently cover only the start of the action. The RIFF header holds the
    size the writer finished with; a shorter file lost its end.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"AVI ":
        return f"not an AVI file (header {head[:12]!r})"
    declared = struct.unpack("<I", head[4:8])[0] + 8
    # OpenDML files over 1 GB continue in AVIX chunks after the first RIFF; only a file
    # shorter than its first chunk is known to be cut.
    if size < declared:
        return f"truncated: its RIFF header says {declared} bytes, the file has {size}"
    return None


def resize_crop_box(hw: tuple[int, int], size: int) -> tuple[tuple[int, int], tuple]:
    """Short side -> ``size``, centre square crop: the resized (h, w) and the crop box in
    pixels of the original frame."""
    H, W = hw
    scale = size / min(H, W)
    rh, rw = max(size, round(H * scale)), max(size, round(W * scale))
    y0, x0 = (rh - size) // 2, (rw - size) // 2
    return (rh, rw), (y0 / scale, x0 / scale, size / scale, size / scale)


def rate_frames(start: int, end: int, fps: float, rate: float) -> np.ndarray:
    """The frames of ``[start, end)`` at ``rate`` frames per second: frame
    ``start + round(j * fps / rate)`` for j = 0, 1, ... (every frame when the video is
    slower than ``rate``)."""
    step = max(fps / rate, 1.0) if fps > 0 else 1.0
    idx = start + np.round(np.arange(int(np.ceil((end - start) / step))) * step)
    return np.unique(np.minimum(idx.astype(np.int64), end - 1))


def decode_clip(
    entry: VideoEntry, k: int, size: int, rate: float = 0.0
) -> tuple[np.ndarray, ClipMeta]:
    """Decode ``k`` frames of one clip (or, with ``rate``, every frame of it at that
    frame rate: a whole video for frame-wise prediction), resized and centre-cropped to
    ``size`` x ``size``; read in chunks, so a long video never sits in memory at its
    full resolution.

    Returns:
        frames [k, size, size, 3] uint8 and the clip's :class:`ClipMeta`.

    Raises:
        BadVideoError: the file is missing, truncated, unreadable or has no frames in the
            clip's range; the message names the file.
    """
    from decord import DECORDError, VideoReader, cpu

    path = entry.path
    if not path.is_file():
        raise BadVideoError(f"{path}: file not found")
    try:
        if path.suffix.lower() == ".avi" and (why := avi_truncation(path)):
            raise BadVideoError(f"{path}: {why}")
    except OSError as e:  # permission denied, I/O error
        raise BadVideoError(f"{path}: cannot be read: {e.strerror or e}") from e
    try:
        source = source_id(path)
        vr = VideoReader(str(path), ctx=cpu(0), num_threads=1)
        n = len(vr)
        fps = float(vr.get_avg_fps())
        if n == 0:
            raise BadVideoError(f"{path}: the video has no frames")
        end = n if entry.end is None else min(entry.end, n)
        if end <= entry.start:
            raise BadVideoError(
                f"{path}: clip {entry.clip_id} asks for frames [{entry.start}, "
                f"{entry.end}) but the video has {n} frames"
            )
        idx = (
            rate_frames(entry.start, end, fps, rate)
            if rate
            else segment_centres(entry.start, end, k)
        )
        out, hw, box = None, (0, 0), (0.0, 0.0, 0.0, 0.0)
        t = 0
        for chunk in _chunks(idx):
            raw = vr.get_batch(chunk.tolist()).asnumpy()  # [c, H, W, 3]
            if out is None:
                hw = raw.shape[1:3]
                (rh, rw), box = resize_crop_box(hw, size)
                y0, x0 = (rh - size) // 2, (rw - size) // 2
                out = np.empty((len(idx), size, size, 3), dtype=np.uint8)
            for frame in raw:
                img = Image.fromarray(frame).resize((rw, rh), Image.BILINEAR, reducing_gap=None)
                out[t] = np.asarray(img)[y0 : y0 + size, x0 : x0 + size]
                t += 1
    except (RuntimeError, DECORDError, OSError) as e:  # unreadable container or stream,
        # or a decoder error while reading frames (DECORDError is not a RuntimeError)
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BadVideoError(f"{path}: decord cannot read it: {why}") from e
    meta = ClipMeta(
        entry.clip_id, tuple(int(i) for i in idx), box, (int(hw[0]), int(hw[1])), source, n, fps
    )
    return out, meta


def _chunks(idx: np.ndarray, size: int = 64) -> list[np.ndarray]:
    return [idx[i : i + size] for i in range(0, len(idx), size)]
