"""TSViT with a timm image ViT as its frame encoder (``model.frame_encoder=timm:<name>``).

The spatial stage of :class:`~rsexp.core.models.factorised.FactorisedVideoViT` becomes a
timm ``VisionTransformer`` run on every frame (``[B*T, C, H, W]``), fused attention kept
in every layer: the supervised layer's CLS->patch attention is recomputed by one forward
hook (:class:`~rsexp.core.tap.AttentionTap`) and pooled onto the guidance grid. The
frames' CLS features (projected to ``model.embed_dim`` when the widths differ) feed
TSViT's temporal stage and its three views unchanged (paper §2.3.2).

Weights: ``model.frame_encoder_weights`` is a local file (timm reads it through
``pretrained_cfg_overlay``; position embeddings are resampled to the frame size), or
``timm`` for timm's own cache / hub where the machine is online; "" starts at random.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from rsexp.core.attn_grid import AttentionToGrid
from rsexp.core.frames import FrameNorm
from rsexp.core.models.factorised import FactorisedVideoViT
from rsexp.core.settings import ConfigError, ModelConfig
from rsexp.core.tap import AttentionTap

# timm modules whose models are VisionTransformer (or subclasses with its blocks)
VIT_FAMILIES = ("timm.models.vision_transformer", "timm.models.deit")


def timm_name(cfg: ModelConfig) -> str:
    """The timm model name of ``model.frame_encoder`` (``timm:<name>``)."""
    kind, _, name = cfg.frame_encoder.partition(":")
    if kind != "timm" or not name:
        raise ConfigError(
            f"model.frame_encoder: {cfg.frame_encoder!r}; expected timm:<name> "
            f"(a timm image ViT, e.g. timm:vit_small_patch16_224) or '' for rsexp's own"
        )
    return name


def create_frame_vit(cfg: ModelConfig, img_size: int) -> nn.Module:
    """The timm ViT of ``model.frame_encoder``, headless, at ``img_size``."""
    import timm

    name, weights = timm_name(cfg), cfg.frame_encoder_weights
    kwargs = dict(num_classes=0, img_size=img_size)
    if weights not in ("", "timm"):
        if not Path(weights).is_file():
            raise FileNotFoundError(f"model.frame_encoder_weights: no such file: {weights}")
        kwargs["pretrained_cfg_overlay"] = dict(file=weights)
    if not timm.is_model(name):
        raise ConfigError(f"model.frame_encoder: timm has no model {name!r}")
    family = timm.models.model_entrypoint(name).__module__
    if family not in VIT_FAMILIES:
        raise ConfigError(
            f"model.frame_encoder: timm:{name} comes from {family}; rsexp taps timm's "
            f"VisionTransformer family ({', '.join(VIT_FAMILIES)}): a CLS token and a qkv "
            f"attention per block"
        )
    on_meta = torch.empty(0).device.type == "meta"  # check_model: the structure only
    vit = timm.create_model(name, pretrained=bool(weights) and not on_meta, **kwargs)
    if vit.cls_token is None or vit.global_pool != "token":
        raise ConfigError(
            f"model.frame_encoder: timm:{name} pools with {vit.global_pool!r} and has no "
            f"CLS readout; RS supervises the CLS->patch attention (paper §2.3.1)"
        )
    return vit


class TimmFrameVideoViT(FactorisedVideoViT):
    """TSViT whose spatial stage is a timm ViT (see the module docstring).

    ``frame_vit`` stands in place of the inherited patch embedding, CLS token, position
    table and spatial blocks; the temporal stage and the three views are the parent's.
    Single frames only (``tubelet`` 1).
    """

    def __init__(self, cfg: ModelConfig, *, img_size: int, guidance_grid: int, **shape):
        vit = create_frame_vit(cfg, img_size)
        side = vit.patch_embed.grid_size
        # the parent's own spatial stage, built small (one block on a 1x1 grid) and dropped:
        # its temporal stage, head and initialisation are TSViT's
        own = dataclasses.replace(cfg, depth=1, attn_layer=-1)
        super().__init__(
            own, img_size=1, patch_size=1, guidance_grid=guidance_grid, tubelet=1, **shape
        )
        del self.patch_embed, self.cls_token, self.pos_embed, self.blocks, self.norm
        self.frame_vit = vit
        self.patch_grid = tuple(side)
        width = vit.num_features
        self.frame_proj = (
            nn.Identity() if width == cfg.embed_dim else nn.Linear(width, cfg.embed_dim)
        )
        cfg_stats = getattr(vit, "pretrained_cfg", {}) or {}
        self.frame_norm = FrameNorm(cfg_stats.get("mean"), cfg_stats.get("std"))
        self.to_grid = AttentionToGrid(
            self.patch_grid, (guidance_grid, guidance_grid), cfg.attn_to_grid
        )
        self.tap = AttentionTap(vit, cfg.attn_layer)

    def no_weight_decay(self) -> set[str]:
        own = {"temporal_cls_token", "time_embed"}
        return own | {f"frame_vit.{n}" for n in ("cls_token", "pos_embed", "reg_token")}

    def encode_frames(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, T, C, H, W] -> frame embeddings [B, T, D], CLS attention [B, T, K]."""
        B, T = x.shape[:2]
        cls = self.frame_vit(self.frame_norm(x).flatten(0, 1))  # headless: [B*T, width]
        attn = self.tap.attn.reshape(B, T, -1)  # [B*T, 1, K] -> [B, T, K]
        return self.frame_proj(cls).reshape(B, T, -1), attn
