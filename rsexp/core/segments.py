"""Temporal segments of a clip for the three-level consistency loss (paper §2.3.2)."""

from __future__ import annotations

import math

LEVELS = ("im", "ctx", "nar")


def released_slices(num_frames: int) -> dict[str, slice]:
    """The released model's segments, adaptive to the clip length T (its
    ``_adaptive_temporal_segmentation``): T <= 4: both views are the whole clip; T <= 8:
    immediate = the last half, contextual = all; T <= 16: immediate = the last quarter,
    contextual = the middle half; longer: immediate = the last max(4, T // 8) frames,
    contextual = max(8, T // 4) frames centred on T // 2."""
    T = num_frames
    if T <= 4:
        im, ctx = (0, T), (0, T)
    elif T <= 8:
        im, ctx = (T // 2, T), (0, T)
    elif T <= 16:
        im, ctx = (3 * T // 4, T), (T // 4, 3 * T // 4)
    else:
        n_im, n_ctx = max(4, T // 8), max(8, T // 4)
        start = max(0, T // 2 - n_ctx // 2)
        im, ctx = (T - n_im, T), (start, min(T, start + n_ctx))
    return {"im": slice(*im), "ctx": slice(*ctx), "nar": slice(0, T)}


def slices_for(num_frames: int, segments) -> dict[str, slice]:
    """The segments a ``SegmentsConfig`` asks for, on ``num_frames`` temporal tokens."""
    if segments.split == "released":
        return released_slices(num_frames)
    return segment_slices(
        num_frames, segments.immediate, segments.contextual, segments.immediate_at
    )


def _round(x: float) -> int:
    """Half up (Python's round() takes 2.5 to 2 and 3.5 to 4: frame counts would jump)."""
    return math.floor(x + 0.5 + 1e-9)


def segment_slices(
    num_frames: int, immediate: float = 0.2, contextual: float = 0.6, immediate_at: str = "start"
) -> dict[str, slice]:
    """Frame slices of the immediate, contextual and narrative segments.

    Paper §2.3.2: immediate = first 20 % of the frames, contextual = middle 60 %,
    narrative = the whole clip. The released code takes the immediate segment from the
    end of the clip (``immediate_at="end"``).

    The two are disjoint in the paper (20 % + 60 % centred leaves 20 % at either end), and
    stay so after rounding: the contextual segment leaves ``round((1 - contextual) * T /
    2)`` frames at each end, the immediate one takes ``round(immediate * T)`` frames from
    its end, and rounding is monotone, so ``immediate <= (1 - contextual) / 2`` keeps them
    apart at every T (with T = 8: immediate 0:2, contextual 2:6; rounding each length on
    its own gave 0:2 and 1:6). Each segment holds at least one frame; a T too short for
    both to fit apart is refused, naming both.

    Args:
        num_frames: T, the clip length (or the number of temporal tokens).
        immediate: fraction of T in the immediate segment, in (0, 1].
        contextual: fraction of T in the centred contextual segment, in (0, 1].
        immediate_at: ``"start"`` (paper) or ``"end"`` (released code).

    Returns:
        ``{"im": slice, "ctx": slice, "nar": slice}`` into the time axis.

    Raises:
        ValueError: bad ratios, or a T at which the two segments would overlap.
    """
    T = num_frames
    if T < 1:
        raise ValueError(f"num_frames must be >= 1, got {T}")
    if not (0 < immediate <= 1 and 0 < contextual <= 1):
        raise ValueError(f"segment ratios must be in (0, 1], got {immediate}, {contextual}")
    if immediate_at not in ("start", "end"):
        raise ValueError(f"immediate_at must be 'start' or 'end', got {immediate_at!r}")
    edge = min(_round((1 - contextual) * T / 2), (T - 1) // 2)  # the contextual keeps >= 1
    ctx = slice(edge, T - edge)
    n_im = min(T, max(1, _round(immediate * T)))
    im = slice(0, n_im) if immediate_at == "start" else slice(T - n_im, T)
    overlap = n_im > edge
    if overlap and 2 * immediate + contextual <= 1 + 1e-9:
        raise ValueError(
            f"with {T} temporal tokens the immediate segment ({immediate:g} of the clip: "
            f"frames {im.start}:{im.stop}) and the contextual segment ({contextual:g}: "
            f"frames {ctx.start}:{ctx.stop}) overlap: they cannot both hold a frame apart; "
            f"use more frames (data.num_frames) or smaller loss.segments ratios"
        )
    return {"im": im, "ctx": ctx, "nar": slice(0, T)}
