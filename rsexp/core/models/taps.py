"""Where rsexp's own models keep their supervised layer, for
:func:`~rsexp.core.tap.attention_tap` (registered when the models are imported)."""

from __future__ import annotations

from torch import nn

from rsexp.core.models.factorised import FactorisedVideoViT
from rsexp.core.models.timesformer import TimeSformer
from rsexp.core.models.timm_frames import TimmFrameVideoViT
from rsexp.core.tap_sites import (
    TapSite,
    fused_qkv_rows,
    per_frame,
    pick_layer,
    register_tap,
    timm_site,
)


def _rsexp_site(model: nn.Module, layer: int) -> TapSite:
    if isinstance(model, TimmFrameVideoViT):  # TSViT on a timm ViT: its frame encoder's
        site = timm_site(model.frame_vit, layer)
        prefix = model.frame_vit.num_prefix_tokens
        return TapSite(site.module, site.rows, lambda rows, batch: per_frame(rows, batch, prefix))
    blk = pick_layer(model.blocks, layer, type(model).__name__)
    if isinstance(model, FactorisedVideoViT):
        # the frame encoder runs on [B*T', 1+K, D]: one row per (tubelet-)frame
        def arrange(rows, batch):
            a = per_frame(rows, batch)
            return a.repeat_interleave(model.tubelet, dim=1) if model.tubelet > 1 else a
    else:  # TimeSformer: spatial attention within each frame, [B*T, 1+K, D]

        def arrange(rows, batch):
            return per_frame(rows, batch)

    return TapSite(blk.attn, fused_qkv_rows, arrange)


def _is_rsexp(model: nn.Module) -> bool:
    return isinstance(model, (FactorisedVideoViT, TimeSformer))


register_tap("rsexp", _is_rsexp, _rsexp_site)
