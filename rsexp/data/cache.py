"""The decoded-clip cache: one file per clip (JPEGs in an ``.npz``, or raw ``.npy``) and
``meta.jsonl`` per split, filled by a pool of decoding processes.

Each clip is written atomically and recorded in ``meta.jsonl`` by the process that
decoded it, as soon as it is done, so an interrupted preparation continues where it
stopped and loses nothing. A clip stays current only while its source video is the file
it was decoded from (size and modification time); a replaced or deleted video is
decoded again. Bad videos are named with their reasons in ``failures.json``.
"""

from __future__ import annotations

import fcntl
import io
import json
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from rsexp.data.video import BadVideoError, ClipMeta, VideoEntry, decode_clip, source_id
from rsexp.fileio import atomic

CACHE_VERSION = 2  # 2: each clip records its source file (size, mtime)
CACHE_FORMATS = {"jpeg": ".npz", "npy": ".npy"}
JPEG_QUALITY = 90


def _file_name(clip_id: str, fmt: str) -> str:
    """A file name for a clip id (ids may hold '/' or '@')."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in clip_id)
    return stem + CACHE_FORMATS[fmt]


def save_frames(path: Path, frames: np.ndarray) -> None:
    """Write [K, S, S, 3] uint8 frames atomically: ``.npy`` raw, ``.npz`` as JPEGs."""
    with atomic(path) as tmp, tmp.open("wb") as f:
        if path.suffix == ".npy":
            np.save(f, frames)
        else:
            jpegs = []
            for frame in frames:
                buf = io.BytesIO()
                Image.fromarray(frame).save(buf, format="JPEG", quality=JPEG_QUALITY)
                jpegs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
            offsets = np.cumsum([0] + [len(j) for j in jpegs])
            np.savez(f, data=np.concatenate(jpegs), offsets=offsets)


def load_frames(path: Path, idx=None) -> np.ndarray:
    """Read what :func:`save_frames` wrote: [K, S, S, 3] uint8, or only the frames
    ``idx`` (a training item uses one of the ``temporal_jitter`` candidates per segment,
    so only those are read or JPEG-decoded)."""
    if path.suffix == ".npy":
        frames = np.load(path, mmap_mode="r")
        return np.array(frames if idx is None else frames[np.asarray(idx)])
    with np.load(path) as z:
        data, offsets = z["data"], z["offsets"]
    pick = range(len(offsets) - 1) if idx is None else idx
    return np.stack(
        [
            np.asarray(Image.open(io.BytesIO(data[offsets[t] : offsets[t + 1]])).convert("RGB"))
            for t in pick
        ]
    )


def _decode_to_cache(
    entry: VideoEntry, cache_dir: str, k: int, size: int, fmt: str, rate: float = 0.0
):
    """Pool task: decode one clip into the cache and record it there; ("ok", meta) or
    ("bad", reason). The worker records the clip itself, right after its file: a clip
    on disk is never lost to an interrupt that reaches the parent first."""
    try:
        frames, meta = decode_clip(entry, k, size, rate)
    except BadVideoError as e:
        return entry.clip_id, "bad", str(e)
    save_frames(Path(cache_dir) / _file_name(entry.clip_id, fmt), frames)
    record_clip(Path(cache_dir), meta)
    return entry.clip_id, "ok", meta


def record_clip(root: Path, meta: ClipMeta) -> None:
    """Append one clip's line to ``meta.jsonl``."""
    line = json.dumps(
        {
            "clip": meta.clip_id,
            "frames": meta.frames,
            "box": meta.box,
            "hw": meta.hw,
            "source": meta.source,
            "length": meta.length,
            "fps": meta.fps,
        }
    )
    # one O_APPEND write per line: never interleaved, never torn by a crash mid-call
    fd = os.open(root / "meta.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@contextmanager
def _locked(path: Path):
    """An exclusive lock across processes (sweep workers preparing the same split)."""
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _current(meta: ClipMeta | None, path: Path) -> bool:
    if meta is None or meta.length <= 0:
        return False
    try:
        return meta.source == source_id(path)
    except OSError:  # deleted since: decode again, which names it as a bad video
        return False


class ClipCache:
    """One split's decoded clips: one file per clip and ``meta.jsonl`` in ``root``.

    With ``rate`` > 0 a "clip" is every frame of its range at that frame rate (whole
    videos for frame-wise prediction; ``k`` is then unused).

    ``fmt="jpeg"`` stores each clip's frames as JPEGs (quality 90) in one ``.npz``:
    about 5x smaller than raw arrays (bench-decode: 0.66 vs 3.15 MB per 16 x 256 px clip;
    SSv2's would not fit on most disks raw) for a few ms of decoding per clip in the
    DataLoader workers. ``fmt="npy"`` stores raw uint8 arrays, for small datasets on
    fast disks.

    The folder name carries everything the files depend on (split, frames per clip,
    side, format, cache version), so changing ``num_frames`` or ``frame_size`` decodes
    anew beside the old cache rather than mixing the two.
    """

    def __init__(
        self, base: Path, split: str, k: int, size: int, fmt: str = "jpeg", rate: float = 0.0
    ):
        if fmt not in CACHE_FORMATS:
            raise ValueError(f"cache format {fmt!r}; valid: {', '.join(CACHE_FORMATS)}")
        self.k, self.size, self.fmt, self.rate = k, size, fmt, rate
        frames = f"fps{rate:g}" if rate else f"k{k}"
        self.root = Path(base) / f"{split}-{frames}-s{size}-{fmt}-v{CACHE_VERSION}"

    def file(self, clip_id: str) -> Path:
        return self.root / _file_name(clip_id, self.fmt)

    def done(self) -> dict[str, ClipMeta]:
        """Clips already decoded (recorded in ``meta.jsonl`` with their file present)."""
        path = self.root / "meta.jsonl"
        if not path.is_file():
            return {}
        out = {}
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}, line {n}: not JSON ({e}); delete {self.root} to decode again"
                ) from e
            meta = ClipMeta(
                d["clip"],
                tuple(d["frames"]),
                tuple(d["box"]),
                tuple(d["hw"]),
                tuple(d["source"]),
                d.get("length", 0),  # absent before cache lines recorded it: decoded again
                d.get("fps", 0.0),
            )
            if self.file(meta.clip_id).is_file():
                out[meta.clip_id] = meta  # a later line (a re-decode) wins
        return out

    def prepare(
        self,
        entries: list[VideoEntry],
        workers: int = 0,
        on_start: Callable[[int], None] | None = None,
        on_clip: Callable[[], None] | None = None,
    ) -> tuple[dict[str, ClipMeta], dict[str, str]]:
        """Decode every clip of ``entries`` not cached yet.

        Args:
            entries: the split's clips.
            workers: decoding processes; 0 = one per CPU core, 1 = in this process.
            on_start: called with the number of clips left to decode.
            on_clip: called after each decoded (or failed) clip.

        Returns:
            ``(metas, failures)``: the cached clips of ``entries`` by id, and the clips
            that could not be decoded with their reasons (also written to
            ``failures.json``; the file is removed when none failed).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with _locked(self.root / ".lock"):
            for stale in self.root.glob("*.tmp"):  # a clip whose writer was killed
                stale.unlink()
            done = self.done()
            # a clip is current only while its video is the file it was decoded from
            todo = [e for e in entries if not _current(done.get(e.clip_id), e.path)]
            for e in todo:
                done.pop(e.clip_id, None)
            if on_start:
                on_start(len(todo))
            failures: dict[str, str] = {}
            for clip_id, status, value in self._decode(todo, workers):
                if status == "ok":
                    done[clip_id] = value
                else:
                    failures[clip_id] = value
                if on_clip:
                    on_clip()
            report = self.root / "failures.json"
            if failures:
                report.write_text(json.dumps(failures, indent=1, sort_keys=True))
            elif report.exists():
                report.unlink()
        wanted = {e.clip_id for e in entries}
        return {c: m for c, m in done.items() if c in wanted}, failures

    def _decode(self, todo: list[VideoEntry], workers: int) -> Iterator[tuple]:
        workers = workers or os.cpu_count() or 1
        task = partial(
            _decode_to_cache,
            cache_dir=str(self.root),
            k=self.k,
            size=self.size,
            fmt=self.fmt,
            rate=self.rate,
        )
        if workers == 1 or len(todo) <= 1:
            yield from map(task, todo)
            return
        yield from run_pool(task, todo, workers, lambda e: (e.clip_id, "bad", e.path))


CHUNK = 4  # clips per task sent to a worker


def run_pool(task: Callable, items: list, workers: int, crashed: Callable) -> Iterator:
    """``task`` over ``items`` in worker processes, results in order; a crash is pinned.

    A worker that dies (a decoder crashing on a malformed file, the OOM killer) breaks a
    process pool. The items in flight then are among the first ``(workers + 1) * CHUNK``
    unfinished ones (the pool hands out chunks in order, ``workers + 1`` at a time):
    those are run again one per process, where a crash names its item and yields
    ``crashed(item)`` with the reason appended, and the rest continue in a new pool.

    Workers come from a fork server, not fork: a child forked from a process holding
    decord state can hang. The server preloads only the workers' code (not the default
    ``__main__``, the CLI with torch), so workers start light, and they ignore Ctrl-C.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["rsexp.data._decode_server"])
    todo = list(items)
    while todo:
        finished = 0
        try:
            with ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx) as pool:
                for result in pool.map(task, todo, chunksize=CHUNK):
                    finished += 1
                    yield result
            return
        except BrokenProcessPool:
            rest = todo[finished:]
            n = (workers + 1) * CHUNK
            suspects, todo = rest[:n], rest[n:]
            for item in suspects:
                with ProcessPoolExecutor(1, mp_context=ctx) as one:
                    try:
                        yield one.submit(task, item).result()
                    except BrokenProcessPool:
                        *head, where = crashed(item)
                        yield (*head, f"{where}: the decoder crashed on it (its process died)")


class CachedClips:
    """The sequence of a split's cached clip arrays, read from disk on demand.

    Holds only paths, so it pickles cheaply into DataLoader workers.
    """

    def __init__(self, files: Iterable[Path]):
        self.files = [Path(f) for f in files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        return load_frames(self.files[i])

    def frames(self, i: int, idx) -> np.ndarray:
        """Only the frames ``idx`` of clip ``i``."""
        return load_frames(self.files[i], idx)
