"""Attention overlays: a clip's frames with the CLS->patch attention as a heat map, the
guidance cells outlined and the true / predicted labels written underneath."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

_CMAP = colormaps["inferno"]


def render_overlay(
    frames: np.ndarray,
    attn: np.ndarray,
    mask: np.ndarray,
    true_label: str,
    pred_label: str,
    confidence: float,
    cell_px: int = 16,
    alpha: float = 0.55,
) -> np.ndarray:
    """One strip image for one clip.

    Args:
        frames: [T, H, W, 3] uint8.
        attn: [T, N] attention over the g x g guidance cells (N = g * g).
        mask: [T, N] bool guidance cells (outlined in green).
        true_label, pred_label, confidence: written under the strip.
        cell_px: rendered side of one guidance cell.

    Returns:
        [H', W', 3] uint8 image.
    """
    T, N = attn.shape
    g = int(round(N**0.5))
    side = g * cell_px
    tiles = []
    for t in range(T):
        frame = Image.fromarray(frames[t]).resize((side, side), Image.BILINEAR)
        a = attn[t].reshape(g, g)
        a = a / max(float(a.max()), 1e-12)  # per-frame scale: where, not how much
        heat = (_CMAP(a)[..., :3] * 255).astype(np.uint8)
        heat = Image.fromarray(heat).resize((side, side), Image.NEAREST)
        tile = Image.blend(frame, heat, alpha)
        draw = ImageDraw.Draw(tile)
        for n in np.flatnonzero(mask[t]):
            r, c = divmod(int(n), g)
            draw.rectangle(
                [c * cell_px, r * cell_px, (c + 1) * cell_px - 1, (r + 1) * cell_px - 1],
                outline=(0, 255, 0),
                width=2,
            )
        tiles.append(tile)
    gap, text_h = 2, 14
    strip = Image.new("RGB", (T * side + (T - 1) * gap, side + text_h), (255, 255, 255))
    for t, tile in enumerate(tiles):
        strip.paste(tile, (t * (side + gap), 0))
    ok = true_label == pred_label
    ImageDraw.Draw(strip).text(
        (2, side + 1),
        f"true: {true_label}   pred: {pred_label} ({confidence:.2f})",
        fill=(0, 120, 0) if ok else (200, 0, 0),
    )
    return np.asarray(strip)
