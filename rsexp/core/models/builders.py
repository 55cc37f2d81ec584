"""The registered model builders: each takes the :class:`ModelConfig` whole and the
data's shape; where a model has its own patch size or tubelet (the config's 0), it is
stated once, here."""

from __future__ import annotations

from rsexp.core.models.factorised import FactorisedVideoViT
from rsexp.core.models.timesformer import TimeSformer
from rsexp.core.registry import register_model
from rsexp.core.settings import ConfigError, ModelConfig


def _factorised(cfg: ModelConfig, patch: int, tubelet: int, **shape) -> FactorisedVideoViT:
    """The two-stage model with the config's patch / tubelet, or the model's own."""
    return FactorisedVideoViT(
        cfg, patch_size=cfg.patch_size or patch, tubelet=cfg.tubelet or tubelet, **shape
    )


@register_model
def tsvit(cfg: ModelConfig, *, img_size: int, guidance_grid: int, **shape):
    """TSViT (paper §2.1): one token per guidance cell, frame-level CLS, temporal stage."""
    patch = img_size // guidance_grid
    return _factorised(cfg, patch, 1, img_size=img_size, guidance_grid=guidance_grid, **shape)


@register_model
def vivit(cfg: ModelConfig, *, img_size: int, guidance_grid: int, **shape):
    """ViViT factorised encoder: 2-frame tubelets on a patch grid twice as fine as the
    guidance grid."""
    patch = max(1, img_size // (2 * guidance_grid))
    return _factorised(cfg, patch, 2, img_size=img_size, guidance_grid=guidance_grid, **shape)


@register_model
def timesformer(cfg: ModelConfig, *, img_size: int, guidance_grid: int, **shape):
    """TimeSformer, divided space-time attention (``temporal_depth`` is unused: the
    temporal attention sits inside every block)."""
    if cfg.tubelet not in (0, 1):
        raise ConfigError("model.tubelet: timesformer embeds single frames, must be 0 or 1")
    patch = cfg.patch_size or max(1, img_size // 8)
    return TimeSformer(
        cfg, img_size=img_size, patch_size=patch, guidance_grid=guidance_grid, **shape
    )
