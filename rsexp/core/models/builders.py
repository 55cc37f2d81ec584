"""The registered model builders: each takes the :class:`ModelConfig` whole and the
data's shape; where a model has its own patch size or tubelet (the config's 0), it is
stated once, here, with its facts (its label, the paper's size of it).

The paper's sizes (§3.1, Table 1), for the real datasets. TSViT: the released model's
widths (128-d, 4 spatial + 3 temporal layers, 8 heads); ViViT: the factorised encoder at
the paper's 4.3 M parameters; TimeSformer: ViT-B/16 (121 M with a 50-class head here;
the paper prints "88 M"). On the embedded synthetic data every model keeps the small
CPU-sized default; there ViViT and TimeSformer take one patch per guidance cell (8 px,
as TSViT), not their own 4 px."""

from __future__ import annotations

from rsexp.core.models.factorised import FactorisedVideoViT
from rsexp.core.models.timesformer import TimeSformer
from rsexp.core.models.timm_frames import TimmFrameVideoViT
from rsexp.core.registry import register_model
from rsexp.core.settings import ConfigError, ModelConfig


def _own_frames(cfg: ModelConfig, model: str) -> None:
    if cfg.frame_encoder:
        raise ConfigError(
            f"model.frame_encoder: {cfg.frame_encoder!r} replaces TSViT's frame encoder; "
            f"{model} has its own (use model.name=tsvit, or model.name=hf for a Hugging "
            f"Face {model})"
        )


def _factorised(cfg: ModelConfig, patch: int, tubelet: int, **shape) -> FactorisedVideoViT:
    """The two-stage model with the config's patch / tubelet, or the model's own."""
    return FactorisedVideoViT(
        cfg, patch_size=cfg.patch_size or patch, tubelet=cfg.tubelet or tubelet, **shape
    )


@register_model(
    label="TSViT",
    paper_size={"embed_dim": 128, "depth": 4, "temporal_depth": 3, "num_heads": 8,
                "mlp_ratio": 4.0, "patch_size": 0},
)  # fmt: skip
def tsvit(cfg: ModelConfig, *, img_size: int, guidance_grid: int, **shape):
    """TSViT (paper §2.1): one token per guidance cell, frame-level CLS, temporal stage;
    with ``model.frame_encoder=timm:<name>``, a timm image ViT encodes the frames."""
    if cfg.frame_encoder:
        return TimmFrameVideoViT(cfg, img_size=img_size, guidance_grid=guidance_grid, **shape)
    patch = img_size // guidance_grid
    return _factorised(cfg, patch, 1, img_size=img_size, guidance_grid=guidance_grid, **shape)


@register_model(
    label="ViViT",
    paper_size={"embed_dim": 192, "depth": 5, "temporal_depth": 4, "num_heads": 3,
                "mlp_ratio": 4.0, "patch_size": 16},
    small_size={"patch_size": 8},
)  # fmt: skip
def vivit(cfg: ModelConfig, *, img_size: int, guidance_grid: int, **shape):
    """ViViT factorised encoder: 2-frame tubelets on a patch grid twice as fine as the
    guidance grid."""
    _own_frames(cfg, "ViViT")
    patch = max(1, img_size // (2 * guidance_grid))
    return _factorised(cfg, patch, 2, img_size=img_size, guidance_grid=guidance_grid, **shape)


@register_model(
    label="TimeSformer",
    paper_size={"embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4.0,
                "patch_size": 16},
    small_size={"patch_size": 8},
    pretrained=True,  # ImageNet ViT-B/16 or Kinetics-400 TimeSformer weights
)  # fmt: skip
def timesformer(cfg: ModelConfig, *, img_size: int, guidance_grid: int, **shape):
    """TimeSformer, divided space-time attention (``temporal_depth`` is unused: the
    temporal attention sits inside every block)."""
    _own_frames(cfg, "TimeSformer")
    if cfg.tubelet not in (0, 1):
        raise ConfigError("model.tubelet: timesformer embeds single frames, must be 0 or 1")
    patch = cfg.patch_size or max(1, img_size // 8)
    return TimeSformer(
        cfg, img_size=img_size, patch_size=patch, guidance_grid=guidance_grid, **shape
    )
