"""The embedded synthetic video benchmark: a known answer that RS can supervise.

Each clip shows one *actor* (a white cross) and several *distractors* (coloured squares
and rings) on a noisy background. Every object moves in a straight line in one of eight
compass directions; the class is the direction of the actor. Distractors move in
directions drawn from the same eight, so motion alone is confusable: the model must find
the actor by its appearance and read its motion. A ViT trained from scratch with
cross-entropy alone sits on a long plateau here (its CLS token has to discover on its own
which of the objects to attend to); the guidance says exactly that. The actor's box gives
exact per-frame guidance: the cells of the g x g grid that it overlaps.

Generation is vectorised (a few thousand clips in about a second), deterministic by
seed, and cached on disk under ``<root>/synthetic/<digest>/``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsexp.fileio import atomic, write_text

GENERATOR_VERSION = 2
_ACTOR_COLOUR = np.array([245, 245, 245], dtype=np.float32)
CLASS_NAMES = ("E", "NE", "N", "NW", "W", "SW", "S", "SE")
_PALETTE = np.array(
    [[230, 60, 60], [60, 200, 80], [70, 110, 240], [235, 200, 50], [200, 80, 220], [60, 210, 220]],
    dtype=np.float32,
)
_SHAPES = ("cross", "square", "ring")  # the actor is always the cross


@dataclass(frozen=True)
class SyntheticSplit:
    """One split. videos: [V, T, H, W, 3] uint8; labels: [V]; cells: [V, T, g, g] bool."""

    video_ids: list[str]
    videos: np.ndarray
    labels: np.ndarray
    cells: np.ndarray


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: int) -> np.ndarray:
    """Pixels of ``shape`` given offsets dx, dy from its centre (broadcast arrays)."""
    ax, ay = np.abs(dx), np.abs(dy)
    inside = (ax <= r) & (ay <= r)
    if shape == "square":
        return inside
    if shape == "ring":
        return inside & ((ax >= r) | (ay >= r))
    if shape == "cross":
        return inside & ((ax <= 0.5) | (ay <= 0.5))
    raise ValueError(shape)


def _trajectories(rng, n, num_frames, size, r, directions):
    """Centres [n, T, 2] (x, y) of straight motions that stay inside the frame."""
    angle = directions * (np.pi / 4)
    vel = np.stack([np.cos(angle), -np.sin(angle)], axis=-1)  # y grows downwards
    travel = 0.5 * (size - 2 * r - 2)
    t = np.linspace(-0.5, 0.5, num_frames)
    centre = size / 2 + rng.uniform(-1, 1, size=(n, 2)) * 0.25 * (size - 2 * r - 2 - travel)
    pos = centre[:, None, :] + t[None, :, None] * travel * vel[:, None, :]
    return np.clip(pos, r + 1, size - r - 2).astype(np.float32)


def generate_split(
    n: int,
    *,
    num_frames: int,
    size: int,
    grid: int,
    num_classes: int,
    num_distractors: int,
    object_size: int,
    noise: float,
    seed: int,
    prefix: str,
) -> SyntheticSplit:
    """Generate ``n`` clips deterministically from ``seed`` (see module docstring)."""
    rng = np.random.default_rng(seed)
    r = object_size // 2
    labels = rng.integers(0, num_classes, size=n)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    background = rng.uniform(0, 40, size=(n, 1, 1, 1, 3)).astype(np.float32)
    videos = np.broadcast_to(background, (n, num_frames, size, size, 3)).copy()

    # distractors first, the actor last (on top) so its guidance box is what is visible
    objects = [
        (rng.choice(["square", "ring"], size=n), rng.integers(0, num_classes, size=n))
        for _ in range(num_distractors)
    ]
    objects.append((np.full(n, "cross"), labels))
    actor_pos = None
    for k, (shapes, directions) in enumerate(objects):
        pos = np.rint(_trajectories(rng, n, num_frames, size, r, directions))  # [n, T, 2]
        colour = _PALETTE[rng.integers(0, len(_PALETTE), size=n)]  # [n, 3]
        if k == num_distractors:
            colour = np.broadcast_to(_ACTOR_COLOUR, colour.shape)
        dx = xx[None, None] - pos[..., 0, None, None]
        dy = yy[None, None] - pos[..., 1, None, None]
        pix = np.zeros((n, num_frames, size, size), dtype=bool)
        for shape in _SHAPES:
            sel = shapes == shape
            if sel.any():
                pix[sel] = _shape_mask(shape, dx[sel], dy[sel], r)
        videos = np.where(pix[..., None], colour[:, None, None, None, :], videos)
        actor_pos = pos
    videos += rng.normal(0, noise * 255, size=videos.shape).astype(np.float32)
    videos = np.clip(videos, 0, 255).astype(np.uint8)

    # guidance: grid cells overlapped by the actor's box [c - r, c + r] (pixel extent)
    cell = size / grid
    lo = np.floor((actor_pos - r) / cell).astype(int).clip(0, grid - 1)  # [n, T, 2]
    hi = np.floor((actor_pos + r) / cell).astype(int).clip(0, grid - 1)
    idx = np.arange(grid)
    in_x = (idx >= lo[..., 0, None]) & (idx <= hi[..., 0, None])  # [n, T, g]
    in_y = (idx >= lo[..., 1, None]) & (idx <= hi[..., 1, None])
    cells = in_y[..., :, None] & in_x[..., None, :]  # [n, T, g(row), g(col)]
    ids = [f"{prefix}_{i:05d}" for i in range(n)]
    return SyntheticSplit(ids, videos, labels.astype(np.int64), cells)


def _params(cfg, num_frames: int, size: int, grid: int) -> dict:
    return {
        "version": GENERATOR_VERSION,
        "num_train": cfg.num_train,
        "num_val": cfg.num_val,
        "num_test": cfg.num_test,
        "num_classes": cfg.num_classes,
        "num_distractors": cfg.num_distractors,
        "object_size": cfg.object_size,
        "noise": cfg.noise,
        "seed": cfg.seed,
        "num_frames": num_frames,
        "frame_size": size,
        "grid": grid,
    }


def load_or_generate(cfg, num_frames: int, size: int, grid: int, root: str | Path):
    """Both splits of the synthetic benchmark, from the disk cache when present.

    Args:
        cfg: a ``SyntheticConfig`` (sizes, classes, distractors, noise, seed).
        num_frames, size, grid: clip length, frame side in pixels, guidance grid side.
        root: data root; the cache goes to ``<root>/synthetic/<digest>/``.

    Returns:
        ``({"train": split, "val": split, "test": split}, cache_dir)``; no ``test`` when
        ``num_test`` is 0.
    """
    params = _params(cfg, num_frames, size, grid)
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    cache = Path(root) / "synthetic" / digest
    files = cache / "clips.npz"
    if not files.is_file():
        common = dict(
            num_frames=num_frames,
            size=size,
            grid=grid,
            num_classes=cfg.num_classes,
            num_distractors=cfg.num_distractors,
            object_size=cfg.object_size,
            noise=cfg.noise,
        )
        splits = {
            name: generate_split(n, seed=seed, prefix=name, **common)
            for name, n, seed in _SPLITS(cfg)
        }
        cache.mkdir(parents=True, exist_ok=True)
        with atomic(files) as tmp, tmp.open("wb") as f:  # a full disk leaves no part
            np.savez(
                f,
                **{
                    f"{s}_{k}": getattr(split, k)
                    for s, split in splits.items()
                    for k in ("videos", "labels", "cells")
                },
            )
        write_text(cache / "meta.json", json.dumps(params, indent=1))
        return splits, cache
    with np.load(files) as z:
        splits = {
            s: SyntheticSplit(
                [f"{s}_{i:05d}" for i in range(len(z[f"{s}_labels"]))],
                z[f"{s}_videos"],
                z[f"{s}_labels"],
                z[f"{s}_cells"],
            )
            for s, _, _ in _SPLITS(cfg)
        }
    return splits, cache


def _SPLITS(cfg) -> list[tuple[str, int, int]]:
    """(name, size, seed) of each generated split. The test set has a seed stream of its
    own, far from the train/val seeds of any ``data.synthetic.seed``."""
    out = [("train", cfg.num_train, cfg.seed * 2), ("val", cfg.num_val, cfg.seed * 2 + 1)]
    if cfg.num_test:
        out.append(("test", cfg.num_test, 1_000_000_007 + cfg.seed))
    return out
