"""Temporal segments of a clip for the three-level consistency loss (paper §2.3.2)."""

from __future__ import annotations

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


def segment_slices(
    num_frames: int, immediate: float = 0.2, contextual: float = 0.6, immediate_at: str = "start"
) -> dict[str, slice]:
    """Frame slices of the immediate, contextual and narrative segments.

    Paper §2.3.2: immediate = first 20 % of the frames, contextual = middle 60 %,
    narrative = the whole clip. Each segment holds at least one frame. The released
    code takes the immediate segment from the end of the clip (``immediate_at="end"``).

    Args:
        num_frames: T, the clip length (or the number of temporal tokens).
        immediate: fraction of T in the immediate segment, in (0, 1].
        contextual: fraction of T in the centred contextual segment, in (0, 1].
        immediate_at: ``"start"`` (paper) or ``"end"`` (released code).

    Returns:
        ``{"im": slice, "ctx": slice, "nar": slice}`` into the time axis.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not (0 < immediate <= 1 and 0 < contextual <= 1):
        raise ValueError(f"segment ratios must be in (0, 1], got {immediate}, {contextual}")
    n_im = min(num_frames, max(1, round(immediate * num_frames)))
    n_ctx = min(num_frames, max(1, round(contextual * num_frames)))
    ctx_start = (num_frames - n_ctx) // 2
    if immediate_at == "start":
        im = slice(0, n_im)
    elif immediate_at == "end":
        im = slice(num_frames - n_im, num_frames)
    else:
        raise ValueError(f"immediate_at must be 'start' or 'end', got {immediate_at!r}")
    return {"im": im, "ctx": slice(ctx_start, ctx_start + n_ctx), "nar": slice(0, num_frames)}
