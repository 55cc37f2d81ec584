"""Attention overlays: a clip's frames with the CLS->patch attention as a heat map, the
guidance cells outlined and the true / predicted labels written underneath."""

from __future__ import annotations

import functools

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

_CMAP = colormaps["inferno"]


@functools.cache
def _font() -> ImageFont.FreeTypeFont:
    """DejaVu Sans (shipped with matplotlib): PIL's default bitmap font draws class
    names outside ASCII (SSv2 templates, translated labels) as boxes."""
    from matplotlib import font_manager

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), 11)


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
        font=_font(),
    )
    return np.asarray(strip)


def pick_overlay_clips(val, n: int) -> list[int]:
    """``n`` fixed validation clips for the overlays, one class after another, so the
    step slider shows the same clips every epoch; clips with guidance first (their cells
    are outlined), and a class with no guided clip still gets an unguided one."""
    guided = [bool(val.masks[i].any()) for i in range(len(val))]
    by_class: dict[int, list[int]] = {}
    for i in sorted(range(len(val)), key=lambda i: not guided[i]):
        by_class.setdefault(int(val.labels[i]), []).append(i)
    order = [
        c[k]
        for k in range(max(map(len, by_class.values()), default=0))
        for c in by_class.values()
        if k < len(c)
    ]
    return order[:n]


def overlay_images(
    val, clips: list[int], logits, attn, class_names: list[str], cell_px: int
) -> dict[str, tuple[np.ndarray, str]]:
    """``{"overlay/<clip id>": (image, caption)}`` for ``clips`` of ``val``, given the
    model's outputs on them: logits [n, C] and attention [n, T, N] (tensors)."""
    import torch  # the experiment's tensors; imported here to keep this module light

    probs = torch.as_tensor(logits).float().softmax(-1).cpu()
    images = {}
    for j, i in enumerate(clips):
        frames, mask = val.clip(i)
        true, pred = class_names[int(val.labels[i])], class_names[int(probs[j].argmax())]
        img = render_overlay(
            frames.numpy(),
            attn[j].cpu().numpy(),
            mask.numpy(),
            true,
            pred,
            float(probs[j].max()),
            cell_px=cell_px,
        )
        # one level under overlay/: an id holding "/" (your own videos' relative
        # paths, up/v03) would make a folder per part
        images[f"overlay/{val.video_ids[i].replace('/', '_')}"] = (
            img,
            f"true {true}, pred {pred}",
        )
    return images


_PALETTE = colormaps["tab20"]


def render_segmentation(
    videos: list[str], truths, preds, class_names: list[str], width: int = 600
) -> np.ndarray:
    """Action segmentation at a glance: per video, the true labels over its frames as
    one colour bar and the predicted ones as a second (one colour per class, the same
    in both), under its id; a legend of the classes that appear. [H, W, 3] uint8."""
    bar, gap, text_h = 12, 6, 14
    rows = []
    for vid, true, pred in zip(videos, truths, preds, strict=True):
        rows.append((vid, np.asarray(true), np.asarray(pred)))
    shown = sorted({int(c) for _, t, p in rows for c in np.r_[t, p]})
    legend_h = text_h * ((len(shown) + 3) // 4)
    h = len(rows) * (text_h + 2 * bar + gap) + legend_h + gap
    img = Image.new("RGB", (width + 40, h), (255, 255, 255))
    draw = ImageDraw.Draw(img)

    def colour(c: int) -> tuple[int, ...]:
        return tuple(int(255 * x) for x in _PALETTE(c % 20)[:3])

    y = 0
    for vid, true, pred in rows:
        draw.text((2, y), vid, fill=(0, 0, 0), font=_font())
        y += text_h
        for name, seq in (("true", true), ("pred", pred)):
            draw.text((2, y), name, fill=(80, 80, 80), font=_font())
            n = max(len(seq), 1)
            cols = (np.arange(width) * n // width).clip(0, n - 1)
            strip = np.array([colour(int(seq[i])) for i in cols], dtype=np.uint8)
            img.paste(Image.fromarray(np.repeat(strip[None], bar, 0)), (38, y))
            y += bar
        y += gap
    for j, c in enumerate(shown):
        x, yy = 2 + (j % 4) * ((width + 40) // 4), y + (j // 4) * text_h
        draw.rectangle([x, yy + 2, x + 10, yy + 12], fill=colour(c))
        draw.text((x + 14, yy), class_names[c][:22], fill=(0, 0, 0), font=_font())
    return np.asarray(img)
