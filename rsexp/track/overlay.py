"""Attention overlays: a clip's frames in a grid with the CLS->patch attention as a heat
map, the guidance cells outlined, the true and predicted labels, and a colour bar."""

from __future__ import annotations

import functools

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

_CMAP = colormaps["inferno"]


@functools.cache
def _font(size: int = 13) -> ImageFont.FreeTypeFont:
    """DejaVu Sans (shipped with matplotlib): PIL's default bitmap font draws class
    names outside ASCII (SSv2 templates, translated labels) as boxes."""
    from matplotlib import font_manager

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


COLUMNS = 4  # frames per row: 8 frames are a 2 x 4 grid


def render_overlay(
    frames: np.ndarray,
    attn: np.ndarray,
    mask: np.ndarray,
    true_label: str,
    pred_label: str,
    confidence: float,
    cell_px: int = 40,
    alpha: float = 0.55,
) -> np.ndarray:
    """One clip as a person reads it: its frames in a grid (4 to a row, each
    ``g * cell_px`` pixels square: 160 at the default), the CLS->patch attention as a
    heat map over each frame, the guidance cells outlined in green, the frame number
    under each; above, the true label and the predicted one with the probability the
    model gives it; below, the colour bar of the heat map.

    Args:
        frames: [T, H, W, 3] uint8.
        attn: [T, N] attention over the g x g guidance cells (N = g * g).
        mask: [T, N] bool guidance cells.
        true_label, pred_label, confidence: the labels and the predicted class's
            softmax probability.
        cell_px: rendered side of one guidance cell.

    Returns:
        [H', W', 3] uint8 image.
    """
    T, N = attn.shape
    g = int(round(N**0.5))
    side = g * cell_px
    cols = min(T, COLUMNS)
    rows = -(-T // cols)
    pad, label_h, head_h, bar_h = 6, 16, 26, 34
    header = f"true: {true_label}    predicted: {pred_label} (probability {confidence:.2f})"
    # wide enough for the labels and the colour bar's legend on a clip of few frames
    width = max(cols * side + (cols + 1) * pad, int(_font(14).getlength(header)) + 2 * pad, 560)
    height = head_h + rows * (side + label_h + pad) + bar_h
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    ok = true_label == pred_label
    draw.text((pad, 5), header, fill=(0, 120, 0) if ok else (200, 0, 0), font=_font(14))
    for t in range(T):
        frame = Image.fromarray(frames[t]).resize((side, side), Image.BILINEAR)
        a = attn[t].reshape(g, g)
        a = a / max(float(a.max()), 1e-12)  # per-frame scale: where, not how much
        heat = (_CMAP(a)[..., :3] * 255).astype(np.uint8)
        heat = Image.fromarray(heat).resize((side, side), Image.NEAREST)
        tile = Image.blend(frame, heat, alpha)
        tdraw = ImageDraw.Draw(tile)
        for n in np.flatnonzero(mask[t]):
            r, c = divmod(int(n), g)
            tdraw.rectangle(
                [c * cell_px, r * cell_px, (c + 1) * cell_px - 1, (r + 1) * cell_px - 1],
                outline=(0, 255, 0),
                width=3,
            )
        r, c = divmod(t, cols)
        x, y = pad + c * (side + pad), head_h + r * (side + label_h + pad)
        img.paste(tile, (x, y))
        draw.text((x, y + side + 1), f"frame {t + 1}/{T}", fill=(60, 60, 60), font=_font(12))
    # the colour bar: attention per frame, from its lowest to its highest cell
    y = height - bar_h + 4
    bar_w = min(width - 2 * pad, 260)
    ramp = (_CMAP(np.linspace(0, 1, bar_w))[:, :3] * 255).astype(np.uint8)
    img.paste(Image.fromarray(np.repeat(ramp[None], 10, 0)), (pad, y))
    draw.text((pad, y + 12), "low", fill=(60, 60, 60), font=_font(11))
    draw.text((pad + bar_w - 26, y + 12), "high", fill=(60, 60, 60), font=_font(11))
    draw.text(
        (pad + bar_w + 12, y - 2),
        "attention of the CLS token, scaled per frame;\ngreen: the guidance cells",
        fill=(60, 60, 60),
        font=_font(11),
    )
    return np.asarray(img)


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
