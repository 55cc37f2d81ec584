"""TimeSformer with divided space-time attention (Bertasius et al., 2021).

Parameter names follow the authors' release and timm's ViT (``patch_embed.proj``,
``cls_token``, ``pos_embed``, ``time_embed``, ``blocks.i.{norm1, attn.qkv, attn.proj,
temporal_norm1, temporal_attn.qkv, temporal_attn.proj, temporal_fc, norm2, mlp.fc1,
mlp.fc2}``, ``norm``, ``head``), so ImageNet ViT-B/16 and K400 TimeSformer weights load
from a local file with :func:`load_pretrained`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, PatchEmbed
from torch import nn

from rsexp.core.attn_grid import AttentionToGrid
from rsexp.core.models.layers import (
    Attention,
    init_weights,
    linspace,
    resolve_layer,
    sincos_1d,
    sincos_2d,
)
from rsexp.core.models.output import VideoOutput
from rsexp.core.segments import LEVELS, slices_for
from rsexp.core.settings import ModelConfig, SegmentsConfig


class DividedBlock(nn.Module):
    """Temporal attention (same patch across frames), then spatial attention (within a
    frame, with the clip CLS token replicated per frame), then the MLP."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, drop=0.0, drop_path=0.0):
        super().__init__()
        self.temporal_norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.temporal_attn = Attention(dim, num_heads, proj_drop=drop)
        self.temporal_fc = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def forward(self, x: torch.Tensor, T: int, return_cls_attn: bool = False):
        """x: [B, 1 + K*T, D], patch tokens ordered (k, t) -> same, CLS attn [B*T, K]."""
        B, L, D = x.shape
        K = (L - 1) // T
        cls, xt = x[:, :1], x[:, 1:]
        # temporal attention: [B*K, T, D]
        y, _ = self.temporal_attn(self.temporal_norm1(xt.reshape(B * K, T, D)))
        xt = xt + self.temporal_fc(self.drop_path(y).reshape(B, K * T, D))
        # spatial attention: [B*T, 1 + K, D]
        xs = xt.reshape(B, K, T, D).transpose(1, 2).reshape(B * T, K, D)
        xs = torch.cat([cls.repeat_interleave(T, dim=0), xs], dim=1)
        y, cls_attn = self.attn(self.norm1(xs), return_cls_attn)
        y = self.drop_path(y)
        cls_res = y[:, 0].reshape(B, T, D).mean(dim=1, keepdim=True)
        res = y[:, 1:].reshape(B, T, K, D).transpose(1, 2).reshape(B, K * T, D)
        x = torch.cat([cls, xt], dim=1) + torch.cat([cls_res, res], dim=1)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, cls_attn


class TimeSformer(nn.Module):
    """TimeSformer; clip logits from the CLS token (the narrative view); the immediate and
    contextual views are the head on the mean patch token of their frames."""

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        num_classes: int,
        num_frames: int,
        img_size: int,
        patch_size: int,
        guidance_grid: int,
        segments: SegmentsConfig,
        in_chans: int = 3,
    ):
        super().__init__()
        embed_dim, depth, num_heads = cfg.embed_dim, cfg.depth, cfg.num_heads
        mlp_ratio, drop_rate = cfg.mlp_ratio, cfg.drop_rate
        self.num_frames = num_frames
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        k = img_size // patch_size
        self.patch_grid = (k, k)
        self.attn_layer = resolve_layer(cfg.attn_layer, depth)
        self.segments = slices_for(num_frames, segments)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + k * k, embed_dim))
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = linspace(0.0, cfg.drop_path, depth)  # stochastic depth per layer
        self.blocks = nn.ModuleList(
            DividedBlock(embed_dim, num_heads, mlp_ratio, drop_rate, dpr[i]) for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        self.to_grid = AttentionToGrid(
            self.patch_grid, (guidance_grid, guidance_grid), cfg.attn_to_grid
        )
        with torch.no_grad():  # sine-cosine start, see FactorisedVideoViT
            self.pos_embed[0, 1:] = sincos_2d(k, k, embed_dim)
            self.time_embed[0] = sincos_1d(num_frames, embed_dim)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_weights)

    def no_weight_decay(self) -> set[str]:
        return {"cls_token", "pos_embed", "time_embed"}

    def encode(
        self, tokens: torch.Tensor, seg: slice, with_attn: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Divided space-time attention over the frames ``seg`` only.

        tokens: [B, T, K, D] patch embeddings (with spatial positions) -> the clip's
        CLS [B, D] and, with ``with_attn``, the supervised layer's CLS->patch attention
        [B, T', K].
        """
        x = tokens[:, seg] + self.time_embed[:, seg, None]  # absolute frame positions
        B, T, K, D = x.shape
        x = x.transpose(1, 2).reshape(B, K * T, D)  # tokens ordered (k, t)
        cls = self.cls_token + self.pos_embed[:, :1]
        x = self.pos_drop(torch.cat([cls.expand(B, -1, -1), x], dim=1))
        cls_attn = None
        for i, blk in enumerate(self.blocks):
            x, a = blk(x, T, return_cls_attn=with_attn and i == self.attn_layer)
            cls_attn = a if a is not None else cls_attn
        attn = cls_attn.reshape(B, T, K) if cls_attn is not None else None
        return self.norm(x[:, 0]), attn

    def forward(self, x: torch.Tensor, level_grad: bool = True) -> VideoOutput:
        """x: [B, T, C, H, W] float frames.

        Each level's logits see only their segment's frames (paper §2.3.2): divided
        space-time attention mixes every frame it is given, so the immediate and
        contextual views are their own passes over their frames; the narrative pass
        (all frames) gives the clip logits and the supervised attention.
        ``level_grad=False``: those two passes run without a graph (no loss term trains
        them: a baseline's temporal loss is logged, not optimised), which saves their
        backward.
        """
        B, T = x.shape[:2]
        tokens = self.patch_embed(x.flatten(0, 1))  # [B*T, K, D]
        tokens = (tokens + self.pos_embed[:, 1:]).reshape(B, T, *tokens.shape[1:])
        nar, cls_attn = self.encode(tokens, self.segments["nar"], with_attn=True)
        level_logits = {"nar": self.head(nar)}
        for lvl in ("im", "ctx"):
            seg = self.segments[lvl]
            if seg == self.segments["nar"]:  # a view of the whole clip is the narrative
                level_logits[lvl] = level_logits["nar"]
            else:
                with torch.set_grad_enabled(torch.is_grad_enabled() and level_grad):
                    level_logits[lvl] = self.head(self.encode(tokens, seg, with_attn=False)[0])
        level_logits = {lvl: level_logits[lvl] for lvl in LEVELS}
        return VideoOutput(level_logits["nar"], level_logits, self.to_grid(cls_attn))


def _resize_pos_embed(pe: torch.Tensor, grid: int) -> torch.Tensor:
    """[1, 1 + k*k, D] -> [1, 1 + grid*grid, D], bicubic on the patch part."""
    cls, patches = pe[:, :1], pe[:, 1:]
    k = int(patches.shape[1] ** 0.5)
    if k == grid:
        return pe
    patches = patches.reshape(1, k, k, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([cls, patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], dim=1)


def load_pretrained(model: TimeSformer, path: str | Path) -> dict[str, list[str]]:
    """Load ImageNet ViT(-B/16) or K400 TimeSformer weights from a local file.

    Accepts a plain state dict or one under ``model``/``model_state``/``state_dict``, with
    or without a ``model.`` prefix. Position and time embeddings are resized to the
    model's grid and frame count; a head of another class count is left at its init.
    From image weights (no ``temporal_*`` keys), as in the TimeSformer release, each
    temporal attention starts as a copy of its block's spatial attention and each
    ``temporal_fc`` at zero, so the video model begins as the image model.

    Returns:
        ``{"missing": [...], "unexpected": [...], "skipped": [...]}`` key lists.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model_state", "model", "state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    sd = {k.removeprefix("model."): v for k, v in sd.items()}
    own = model.state_dict()
    if "pos_embed" in sd:
        sd["pos_embed"] = _resize_pos_embed(sd["pos_embed"], model.patch_grid[0])
    if "time_embed" in sd and sd["time_embed"].shape[1] != model.num_frames:
        te = sd["time_embed"].transpose(1, 2)
        sd["time_embed"] = F.interpolate(te, size=model.num_frames, mode="nearest").transpose(1, 2)
    from_image = not any(k.startswith("blocks.") and ".temporal_" in k for k in sd)
    if from_image:  # as the release: temporal attention starts as a copy of the spatial one
        for k in [k for k in sd if k.startswith("blocks.") and (".attn." in k or ".norm1." in k)]:
            sd[k.replace(".attn.", ".temporal_attn.").replace(".norm1.", ".temporal_norm1.")] = sd[
                k
            ]
    skipped = [k for k, v in sd.items() if k in own and own[k].shape != v.shape]
    for k in skipped:
        del sd[k]
    result = model.load_state_dict(sd, strict=False)
    if from_image:
        for blk in model.blocks:
            nn.init.zeros_(blk.temporal_fc.weight)
            nn.init.zeros_(blk.temporal_fc.bias)
    return {
        "missing": list(result.missing_keys),
        "unexpected": list(result.unexpected_keys),
        "skipped": skipped,
    }
