"""Read a W&B offline run file (``run-<id>.wandb``) back, record by record.

wandb 0.31 ships no reader for its offline files. The file is a LevelDB-style log: a
7-byte header (``:W&B``, magic, version), then 32 KiB blocks of chunks, each with a
4-byte checksum, a 2-byte little-endian length and a type (full, first, middle, last);
each whole record is a ``wandb_internal_pb2.Record`` protobuf.
"""

from __future__ import annotations

import json
from pathlib import Path

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: str | Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, out, buf = HEADER, [], b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # the rest of a block too small for a chunk header: padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            whole = chunk
        elif kind == FIRST:
            buf = chunk
            continue
        elif kind == MIDDLE:
            buf += chunk
            continue
        elif kind == LAST:
            whole = buf + chunk
        else:  # zero padding at the end of the file
            continue
        rec = pb.Record()
        rec.ParseFromString(whole)
        out.append(rec)
    return out


def config_updates(path: str | Path) -> list[tuple[str, object]]:
    """Every config item the run file records, in order, as (key, value)."""
    return [
        (_key(u), json.loads(u.value_json))
        for r in records(path)
        if r.WhichOneof("record_type") == "config"
        for u in r.config.update
    ]


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def summary(path: str | Path) -> dict:
    """The run's summary as the file leaves it (the last update of each key)."""
    out = {}
    for r in records(path):
        if r.WhichOneof("record_type") == "summary":
            for u in r.summary.update:
                out[_key(u)] = json.loads(u.value_json)
    return out


def history_steps(path: str | Path, key: str) -> list:
    """The values of ``key`` in every history row, in order."""
    out = []
    for r in records(path):
        if r.WhichOneof("record_type") == "history":
            for item in r.history.item:
                if _key(item) == key:
                    out.append(json.loads(item.value_json))
    return out


def finished(path: str | Path, timeout: float = 60.0) -> bytes:
    """The run file's bytes once it holds the run's exit record: wandb's own service
    process writes the file, and under load may still be writing when ``finish()``
    returns."""
    import time

    from google.protobuf.message import DecodeError

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if any(r.WhichOneof("record_type") == "exit" for r in records(path)):
                break
        except (AssertionError, DecodeError):  # no header yet, or a record half-written
            pass
        time.sleep(0.2)
    return Path(path).read_bytes()
