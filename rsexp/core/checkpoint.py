"""Atomic, versioned checkpoints that load with ``weights_only=True``."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from rsexp.core.errors import CheckpointError  # noqa: F401 (raised here)

FORMAT_VERSION = 1


def capture_rng() -> dict:
    """Python, NumPy and torch (CPU, and CUDA when present) RNG states, tensor-only."""
    np_state = np.random.get_state()
    state = {
        "python": torch.tensor(_flatten_py(random.getstate()), dtype=torch.int64),
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(_unflatten_py(state["python"].tolist()))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _flatten_py(st) -> list[int]:
    version, internal, gauss = st
    return [version, *internal, 0 if gauss is None else 1]


def _unflatten_py(flat: list[int]):
    return (flat[0], tuple(flat[1:-1]), None)


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` (plus the format version) to ``path`` atomically.

    The file is written next to its destination and moved with ``os.replace``, so a
    crash leaves either the old checkpoint or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            try:
                torch.save({"format_version": FORMAT_VERSION, **state}, f)
            except RuntimeError as e:
                # torch's writer reports a failed write (a full disk) as a RuntimeError
                # whose context is the OSError; the OSError is what happened
                if isinstance(e.__context__, OSError):
                    raise e.__context__ from None
                raise
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # disk full, Ctrl-C: the previous checkpoint stays valid
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch.load's errors on a damaged file vary by damage
        why = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        raise CheckpointError(f"cannot read checkpoint {path} ({why})") from e
    version = state.get("format_version") if isinstance(state, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {version}, expected {FORMAT_VERSION}")
    return state
