"""Writing files so that a full disk leaves nothing half-written and says where.

Every file rsexp writes goes through one of these: written beside its destination and
moved into place, so a failure (a full disk, Ctrl-C) leaves the previous file or none,
never a part of one; an appended line is rolled back when it cannot be written whole.
A full disk is a :class:`~rsexp.errors.DiskFullError` naming the file and the free space.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rsexp.errors import DiskFullError


def _free(path: Path) -> str:
    for p in (path, *path.parents):
        if p.exists():
            free = shutil.disk_usage(p).free
            return f"{free / 1e6:.1f} MB" if free < 1e9 else f"{free / 1e9:.1f} GB"
    return "unknown"


def disk_full(path: Path, e: OSError) -> DiskFullError:
    """The error for a write of ``path`` that found no room (``e``)."""
    return DiskFullError(
        errno.ENOSPC,
        f"no space left on the device of {path} ({_free(Path(path))} free) while writing "
        f"it; free some space there (or point the setting that names this folder "
        f"elsewhere) and run the same command again: what was done is kept",
    )


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def atomic(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; moved onto ``path`` when the block
    ends, removed when it raises (a full disk raised as :class:`DiskFullError`)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e) and not isinstance(e, DiskFullError):
            raise disk_full(path, e) from None
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic(path) as tmp:
        tmp.write_text(text)


def append_line(path: str | Path, line: str) -> None:
    """Append ``line`` and a newline whole, or not at all (the file is cut back to its
    size before the write when the write fails)."""
    path = Path(path)
    size = path.stat().st_size if path.exists() else 0
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
            f.flush()
    except OSError as e:
        with open(path, "r+") as f:
            f.truncate(size)
        if is_disk_full(e):
            raise disk_full(path, e) from None
        raise
