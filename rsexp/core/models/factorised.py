"""Two-stage video ViTs: a frame-level spatial encoder, then a temporal encoder.

TSViT (paper §2.1, Fig. 3) tokenises each frame on the guidance grid itself (4x4 by
default), so the spatial CLS->patch attention is directly a distribution over the cells
the LLM annotated. ViViT's factorised encoder (Arnab et al., 2021, model 2) has the same
two stages but embeds tubelets on a finer patch grid; its attention is mapped onto the
guidance grid by :class:`~rsexp.core.attn_grid.AttentionToGrid`.
"""

from __future__ import annotations

import torch
from torch import nn

from rsexp.core.attn_grid import AttentionToGrid
from rsexp.core.models.layers import (
    Block,
    init_weights,
    linspace,
    resolve_layer,
    sincos_1d,
    sincos_2d,
)
from rsexp.core.models.output import VideoOutput
from rsexp.core.segments import LEVELS, slices_for
from rsexp.core.settings import ModelConfig, SegmentsConfig


class FactorisedVideoViT(nn.Module):
    """Spatial ViT per (tubelet-)frame with a CLS token -> temporal transformer -> MLP head.

    Each of the three temporal views (paper §2.3.2) is its own pass of the temporal
    encoder over that segment's frame embeddings, so the immediate prediction really
    sees only the first 20 % of the frames. The narrative pass (all frames) gives the
    clip logits.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        num_classes: int,
        num_frames: int,
        img_size: int,
        patch_size: int,
        guidance_grid: int,
        tubelet: int,
        segments: SegmentsConfig,
        in_chans: int = 3,
    ):
        super().__init__()
        embed_dim, depth, temporal_depth = cfg.embed_dim, cfg.depth, cfg.temporal_depth
        num_heads, mlp_ratio, drop_rate = cfg.num_heads, cfg.mlp_ratio, cfg.drop_rate
        if img_size % patch_size:
            raise ValueError(f"frame size {img_size} is not a multiple of patch {patch_size}")
        if num_frames % tubelet:
            raise ValueError(f"num_frames {num_frames} is not a multiple of tubelet {tubelet}")
        self.num_frames, self.tubelet = num_frames, tubelet
        self.num_tokens_t = num_frames // tubelet
        k = img_size // patch_size
        self.patch_grid = (k, k)
        self.attn_layer = resolve_layer(cfg.attn_layer, depth)
        self.segments = slices_for(self.num_tokens_t, segments)

        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv3d(
            in_chans,
            embed_dim,
            (tubelet, patch_size, patch_size),
            (tubelet, patch_size, patch_size),
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + k * k, embed_dim))
        dpr = linspace(0.0, cfg.drop_path, depth + temporal_depth)  # stochastic depth per layer
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, drop_rate, dpr[i]) for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

        self.temporal_cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.time_embed = nn.Parameter(torch.zeros(1, self.num_tokens_t, embed_dim))
        self.temporal_blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, drop_rate, dpr[depth + i])
            for i in range(temporal_depth)
        )
        self.temporal_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes)
        self.to_grid = AttentionToGrid(
            self.patch_grid, (guidance_grid, guidance_grid), cfg.attn_to_grid
        )

        # Learnable embeddings start as sine-cosine tables rather than N(0, 0.02): the
        # temporal encoder is blind to frame order (and motion direction) until the time
        # embedding is as large as the frame tokens, which from 0.02 takes many epochs.
        with torch.no_grad():
            self.pos_embed[0, 1:] = sincos_2d(k, k, embed_dim)
            self.time_embed[0] = sincos_1d(self.num_tokens_t, embed_dim)
        for p in (self.cls_token, self.temporal_cls_token):
            nn.init.trunc_normal_(p, std=0.02)
        self.apply(init_weights)

    def no_weight_decay(self) -> set[str]:
        return {"cls_token", "pos_embed", "temporal_cls_token", "time_embed"}

    def encode_frames(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, T, C, H, W] -> frame embeddings [B, T', D], CLS attention [B, T', K]."""
        B = x.shape[0]
        x = self.patch_embed.proj(x.transpose(1, 2))  # [B, D, T', kh, kw]
        x = x.permute(0, 2, 3, 4, 1).flatten(2, 3)  # [B, T', K, D]
        Tt, K, D = x.shape[1:]
        x = x.reshape(B * Tt, K, D)
        x = torch.cat([self.cls_token.expand(B * Tt, -1, -1), x], dim=1) + self.pos_embed
        cls_attn = None
        for i, blk in enumerate(self.blocks):
            x, a = blk(x, return_cls_attn=i == self.attn_layer)
            cls_attn = a if a is not None else cls_attn
        x = self.norm(x[:, 0])  # [B*T', D]
        return x.reshape(B, Tt, D), cls_attn.reshape(B, Tt, K)

    def encode_segment(self, frames: torch.Tensor, seg: slice) -> torch.Tensor:
        """Temporal encoder over one segment. frames: [B, T', D] -> [B, D]."""
        x = frames[:, seg] + self.time_embed[:, seg]
        x = torch.cat([self.temporal_cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        for blk in self.temporal_blocks:
            x, _ = blk(x)
        return self.temporal_norm(x[:, 0])

    def forward(self, x: torch.Tensor, level_grad: bool = True) -> VideoOutput:
        """x: [B, T, C, H, W] float frames. ``level_grad=False``: the immediate and
        contextual views are computed without a graph (no loss term trains them)."""
        frames, cls_attn = self.encode_frames(x)
        level_logits = {}
        for lvl in LEVELS:
            with torch.set_grad_enabled(torch.is_grad_enabled() and (level_grad or lvl == "nar")):
                z = self.encode_segment(frames, self.segments[lvl])
                level_logits[lvl] = self.head(self.head_drop(z))
        attn = self.to_grid(cls_attn)  # [B, T', N]
        if self.tubelet > 1:  # a tubelet's attention stands for each of its frames
            attn = attn.repeat_interleave(self.tubelet, dim=1)
        return VideoOutput(level_logits["nar"], level_logits, attn)
