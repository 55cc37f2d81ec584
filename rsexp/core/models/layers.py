"""Transformer layers shared by the video models (timm's Mlp and DropPath inside)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn


def linspace(start: float, stop: float, n: int) -> list[float]:
    """``n`` evenly spaced numbers (``torch.linspace(...).tolist()`` without a tensor, so
    a model can be built on the meta device to check its settings)."""
    if n == 1:
        return [float(start)]
    return [start + (stop - start) * i / (n - 1) for i in range(n)]


class Attention(nn.Module):
    """Multi-head self-attention, timm ViT layout (``qkv``, ``proj``).

    Fused (``scaled_dot_product_attention``) unless the caller asks for the attention of
    token 0 (the CLS token), which needs the explicit softmax; only the supervised layer
    asks.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self, x: torch.Tensor, return_cls_attn: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: [B, L, C] -> ([B, L, C], CLS->others attention [B, L-1] mean over heads or None)."""
        B, L, C = x.shape
        qkv = self.qkv(x).reshape(B, L, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, L, C/H]
        cls_attn = None
        if return_cls_attn:
            attn = ((q * self.scale) @ k.transpose(-2, -1)).float().softmax(dim=-1)  # [B,H,L,L]
            out = attn.to(v.dtype) @ v
            cls_attn = attn[:, :, 0, 1:].mean(dim=1)  # paper §2.3: mean over heads
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(B, L, C)
        return self.proj_drop(self.proj(out)), cls_attn


class Block(nn.Module):
    """Pre-norm transformer block (timm ViT layout: norm1, attn, norm2, mlp)."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, drop=0.0, drop_path=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def forward(self, x, return_cls_attn: bool = False):
        y, cls_attn = self.attn(self.norm1(x), return_cls_attn)
        x = x + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, cls_attn


def init_weights(module: nn.Module) -> None:
    """MAE / timm-"jax" ViT init: Xavier-uniform linear weights, zero biases, unit norms.

    (N(0, 0.02) weights, the other common ViT init, are tuned for width 768; at the
    widths that train on a CPU they shrink every residual update to near zero.)
    """
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def resolve_layer(index: int, depth: int) -> int:
    """Python-style layer index (``-1`` = last) -> 0-based index, with a clear error."""
    i = index + depth if index < 0 else index
    if not 0 <= i < depth:
        raise ValueError(f"model.attn_layer={index} is outside the {depth} spatial layers")
    return i


def sincos_1d(n: int, dim: int) -> torch.Tensor:
    """[n, dim] sine-cosine embedding of positions 0..n-1 (Vaswani et al., 2017)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    angles = torch.arange(n, dtype=torch.float64)[:, None] * omega[None]
    emb = torch.cat([angles.sin(), angles.cos()], dim=1)
    return torch.nn.functional.pad(emb, (0, dim - emb.shape[1])).float()


def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """[h * w, dim] 2-d sine-cosine embedding (MAE): half the channels per axis."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    half = dim // 2
    emb_y = sincos_1d(h, half)[ys.flatten()]
    emb_x = sincos_1d(w, dim - half)[xs.flatten()]
    return torch.cat([emb_y, emb_x], dim=1)
