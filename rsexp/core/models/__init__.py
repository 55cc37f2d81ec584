"""Registered video models. Every builder takes the same keyword arguments:
``num_classes, num_frames, img_size, guidance_grid, patch_size (0 = model default),
tubelet, embed_dim, depth, temporal_depth, num_heads, mlp_ratio, drop_rate, drop_path,
attn_layer, attn_to_grid, segments``.
"""

from __future__ import annotations

from rsexp.core.models.factorised import FactorisedVideoViT
from rsexp.core.models.output import VideoOutput
from rsexp.core.models.timesformer import TimeSformer, load_pretrained
from rsexp.core.registry import register_model

__all__ = ["FactorisedVideoViT", "TimeSformer", "VideoOutput", "load_pretrained"]


@register_model
def tsvit(*, img_size: int, guidance_grid: int = 4, patch_size: int = 0, tubelet: int = 1, **kw):
    """TSViT (paper §2.1): one token per guidance cell, frame-level CLS, temporal stage."""
    patch = patch_size or img_size // guidance_grid
    return FactorisedVideoViT(
        img_size=img_size, patch_size=patch, guidance_grid=guidance_grid, tubelet=tubelet, **kw
    )


@register_model
def vivit(*, img_size: int, guidance_grid: int = 4, patch_size: int = 0, tubelet: int = 2, **kw):
    """ViViT factorised encoder: tubelets on a patch grid twice as fine as the guidance."""
    patch = patch_size or max(1, img_size // (2 * guidance_grid))
    return FactorisedVideoViT(
        img_size=img_size, patch_size=patch, guidance_grid=guidance_grid, tubelet=tubelet, **kw
    )


@register_model
def timesformer(
    *, img_size: int, patch_size: int = 0, tubelet: int = 1, temporal_depth: int = 0, **kw
):
    """TimeSformer, divided space-time attention (temporal_depth is unused: the temporal
    attention sits inside every block)."""
    if tubelet != 1:
        raise ValueError("timesformer embeds single frames: model.tubelet must be 1")
    patch = patch_size or max(1, img_size // 8)
    return TimeSformer(img_size=img_size, patch_size=patch, **kw)
