"""Where a model family's supervised layer is and how its attention is read: the
adapters behind :func:`~rsexp.core.tap.attention_tap`.

A :class:`TapSite` names the attention module to hook, how the CLS query's softmax row
is recomputed from that module's input and weights (``rows``), and how the rows become
``[B, T, K]`` (``arrange``). timm ViTs are registered here, rsexp's own models in
:mod:`rsexp.core.models.taps`, Hugging Face's TimeSformer, ViViT and VideoMAE in
:mod:`rsexp.core.hf_video`, others with :func:`register_tap`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TapSite:
    """Where one model's supervised layer is, and how to read it.

    Attributes:
        module: the attention module whose forward input is hooked.
        rows: ``rows(module, hidden, mask) -> [B', L]``: the attention the layer's
            output puts on each of its L tokens (the CLS query's softmax row, mean over
            heads), from the module's input ``hidden`` [B', L, D] and its additive or
            boolean attention mask (or None).
        arrange: ``arrange(rows, batch) -> [B, T, K]``: the patch part of the rows, one
            row per input frame (a tubelet's row serves each of its frames), for a
            forward on ``batch`` clips.
    """

    module: nn.Module
    rows: Callable[[nn.Module, torch.Tensor, torch.Tensor | None], torch.Tensor]
    arrange: Callable[[torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class _Adapter:
    name: str
    matches: Callable[[nn.Module], bool]
    locate: Callable[[nn.Module, int], TapSite]


_ADAPTERS: list[_Adapter] = []
_views_running = [0]  # > 0 while temporal_views runs its views: taps do not record them


def register_tap(
    name: str, matches: Callable[[nn.Module], bool], locate: Callable[[nn.Module, int], TapSite]
) -> None:
    """Teach :func:`attention_tap` a model family: ``matches(model)`` says whether a model
    is one; ``locate(model, layer) -> TapSite`` finds its layer ``layer`` (Python-style:
    -1 = last). Later registrations are tried first."""
    if any(a.name == name for a in _ADAPTERS):
        raise ValueError(f"attention tap adapter {name!r} is registered twice")
    _ADAPTERS.insert(0, _Adapter(name, matches, locate))


def tap_adapters() -> list[str]:
    return [a.name for a in _ADAPTERS]


def locate_site(model: nn.Module, layer: int) -> TapSite:
    for a in _ADAPTERS:
        if a.matches(model):
            return a.locate(model, layer)
    raise TypeError(
        f"attention_tap: no adapter for {type(model).__module__}.{type(model).__qualname__}; "
        f"known: {', '.join(tap_adapters())} (rsexp.core.tap.register_tap adds one)"
    )


def pick_layer(layers, layer: int, what: str):
    """``layers[layer]`` with a clear error (Python-style index, -1 = last)."""
    n = len(layers)
    if not -n <= layer < n:
        raise ValueError(f"attention_tap: layer {layer} is outside the {n} layers of {what}")
    return layers[layer]


def in_view() -> bool:
    """True inside :func:`views_untapped`: a segment view is running."""
    return _views_running[0] > 0


@contextlib.contextmanager
def views_untapped():
    """Forwards in this block are segment views: open taps neither reset nor record."""
    _views_running[0] += 1
    try:
        yield
    finally:
        _views_running[0] -= 1


# ---------------------------------------------------------------------- shared readers
def cls_rows(q0: torch.Tensor, k: torch.Tensor, scale: float, mask=None) -> torch.Tensor:
    """Softmax row of one query per head, mean over heads.

    q0: [B', H, 1, d] (already normalised where the layer normalises), k: [B', H, L, d],
    mask: additive [B', 1 or H, 1 or L, L] or boolean (True = attend) -> [B', L].
    """
    logits = (q0.float() @ k.float().transpose(-2, -1)) * scale  # [B', H, 1, L]
    if mask is not None:
        mask = mask[..., -1:, :] if mask.shape[-2] > 1 else mask
        if mask.dtype == torch.bool:
            logits = logits.masked_fill(~mask, float("-inf"))
        else:
            logits = logits + mask.float()
    return logits.softmax(dim=-1)[:, :, 0].mean(dim=1)


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B', L, H*d] -> [B', H, L, d]."""
    B, L, C = x.shape
    return x.reshape(B, L, num_heads, C // num_heads).transpose(1, 2)


def fused_qkv_rows(module: nn.Module, hidden: torch.Tensor, mask=None) -> torch.Tensor:
    """Rows of an attention module with a fused ``qkv`` Linear (rsexp's, timm's, the
    TimeSformer release's and Hugging Face's TimeSformer), with timm's optional
    ``q_norm`` / ``k_norm``."""
    C = hidden.shape[-1]
    w, b = module.qkv.weight, module.qkv.bias
    q0 = F.linear(hidden[:, :1], w[:C], None if b is None else b[:C])
    k = F.linear(hidden, w[C : 2 * C], None if b is None else b[C : 2 * C])
    H = module.num_heads
    q0, k = _heads(q0, H), _heads(k, H)
    q_norm, k_norm = getattr(module, "q_norm", None), getattr(module, "k_norm", None)
    if q_norm is not None:
        q0, k = q_norm(q0), k_norm(k)
    return cls_rows(q0, k, module.scale, mask)


def per_frame(rows: torch.Tensor, batch: int, prefix: int = 1) -> torch.Tensor:
    """Rows of a layer that attends within each frame: [B*T, prefix + K] -> [B, T, K]."""
    patches = rows[:, prefix:]
    return patches.reshape(batch, -1, patches.shape[-1])


def per_slot(rows: torch.Tensor, slots: int, tubelet: int, prefix: int = 1) -> torch.Tensor:
    """Rows of a joint space-time layer over tubelet tokens ordered (t', h, w):
    [B, prefix + T'K] -> [B, T, K], each slot's row renormalised within the slot (the
    share of the clip's attention that frame's patches hold, as a distribution over
    them), repeated for each of its ``tubelet`` frames."""
    patches = rows[:, prefix:]
    B = patches.shape[0]
    slot = patches.reshape(B, slots, -1)
    slot = slot / slot.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return slot.repeat_interleave(tubelet, dim=1) if tubelet > 1 else slot


# ---------------------------------------------------------------------- timm's
def _is_timm_vit(model: nn.Module) -> bool:
    vit = sys.modules.get("timm.models.vision_transformer")  # a timm model: timm is loaded
    return vit is not None and isinstance(model, vit.VisionTransformer)


def timm_site(model: nn.Module, layer: int) -> TapSite:
    """A timm ViT on images [B, 3, H, W] (or a batch of frames): [B, 1, K]; its prefix
    tokens (CLS, registers) are dropped."""
    blk = pick_layer(model.blocks, layer, type(model).__name__)
    prefix = model.num_prefix_tokens

    def arrange(rows, batch):
        return rows[:, prefix:].unsqueeze(1)

    return TapSite(blk.attn, fused_qkv_rows, arrange)


register_tap("timm.vit", _is_timm_vit, timm_site)
