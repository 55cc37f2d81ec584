"""Hugging Face transformers' video transformers under RS: where their supervised layer
is, how its attention becomes [B, T, K], and how a segment view sees only its frames.

Torch only: the families are recognised by their classes' modules, so this file never
imports transformers (:mod:`rsexp.adapters.hf` loads the models).

- **TimeSformer** (divided space-time): the spatial attention runs per frame on
  ``[B*T, 1+K, D]``; its CLS row is the frame's CLS->patch attention, as in rsexp's own
  TimeSformer. transformers' layers reshape by ``config.num_frames`` (transformers#38027):
  a view runs with the config's frame count set to the view's and the view's own slice
  of the time embeddings, so positions stay absolute.
- **ViViT** (joint space-time over tubelets ``[B, 1+T'K, D]``): the CLS row is cut into
  T' slots of K patches, each renormalised within its slot (the share of attention that
  slot's patches hold, as a distribution over them) and serving the slot's frames. A
  view keeps the CLS token and its own tubelet tokens (positions added first), the
  same CLS output as a key mask over the others, without their rows: the logits depend
  on the view's tubelets only; segments snap to tubelet boundaries.
- **VideoMAE** has no CLS token: its classifier averages the tokens, so the analogue of
  CLS->patch attention is the *mean query row* of the layer (the weight the averaged
  output puts on each token: mean_q(A V) = (mean_q A) V), slotted as for ViViT. A view
  keeps only its tubelets (``bool_masked_pos`` drops the others before the encoder, as
  in VideoMAE's pre-training); the head averages what is left.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from rsexp.core.tap_sites import (
    TapSite,
    cls_rows,
    fused_qkv_rows,
    per_frame,
    per_slot,
    pick_layer,
    register_tap,
    views_untapped,
)

FAMILIES = ("timesformer", "vivit", "videomae")


def family(model: nn.Module) -> str | None:
    """``timesformer`` / ``vivit`` / ``videomae`` for a Hugging Face model of that family
    (base model or video classifier), else None."""
    mod = type(model).__module__
    for name in FAMILIES:
        if mod.startswith(f"transformers.models.{name}."):
            return name
    return None


def base_model(model: nn.Module) -> nn.Module:
    """The encoder of a classifier (``model.timesformer`` ...), or the model itself."""
    return getattr(model, family(model) or "", model)


def tubelet_t(config) -> int:
    """Frames per tubelet token (ViViT ``tubelet_size[0]``, VideoMAE ``tubelet_size``)."""
    size = getattr(config, "tubelet_size", 1)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


# ---------------------------------------------------------------------- the tap
def _vivit_rows(module: nn.Module, hidden: torch.Tensor, mask=None) -> torch.Tensor:
    H, d = module.num_attention_heads, module.head_dim
    B, L, _ = hidden.shape
    q0 = module.q_proj(hidden[:, :1]).view(B, 1, H, d).transpose(1, 2)
    k = module.k_proj(hidden).view(B, L, H, d).transpose(1, 2)
    return cls_rows(q0, k, module.scaling, mask)


def _videomae_rows(module: nn.Module, hidden: torch.Tensor, mask=None) -> torch.Tensor:
    """Mean query row: [B, L] (the weight the token average puts on each token)."""
    H, d = module.num_attention_heads, module.attention_head_size
    B, L, _ = hidden.shape
    q = module.query(hidden).view(B, L, H, d).transpose(1, 2).float()
    k = module.key(hidden).view(B, L, H, d).transpose(1, 2).float()
    attn = ((q @ k.transpose(-2, -1)) * module.scaling).softmax(dim=-1)  # [B, H, L, L]
    return attn.mean(dim=(1, 2))


def _hf_site(model: nn.Module, layer: int) -> TapSite:
    fam, base = family(model), base_model(model)
    cfg = base.config
    if fam == "timesformer":
        if cfg.attention_type != "divided_space_time":
            raise ValueError(
                f"attention_tap: a TimeSformer with attention_type={cfg.attention_type!r}; "
                f"rsexp supervises the divided space-time one"
            )
        lyr = pick_layer(base.encoder.layer, layer, "TimeSformer")
        return TapSite(lyr.attention.attention, fused_qkv_rows, per_frame)
    t = tubelet_t(cfg)
    slots = cfg.num_frames // t
    if fam == "vivit":
        lyr = pick_layer(base.layers, layer, "ViViT")
        return TapSite(lyr.attention, _vivit_rows, lambda rows, b: per_slot(rows, slots, t))
    lyr = pick_layer(base.encoder.layer, layer, "VideoMAE")
    return TapSite(
        lyr.attention.attention,
        _videomae_rows,
        lambda rows, b: per_slot(rows, slots, t, prefix=0),
    )


register_tap("transformers", lambda m: family(m) is not None, _hf_site)


# ---------------------------------------------------------------------- segment views
def set_num_frames(model: nn.Module, n: int) -> int:
    """Set ``num_frames`` on every config object the model's modules hold (transformers'
    TimeSformer layers read it in every forward); returns the old count."""
    configs = {id(c): c for m in model.modules() if (c := getattr(m, "config", None)) is not None}
    old = base_model(model).config.num_frames
    for c in configs.values():
        c.num_frames = n
    return old


@contextlib.contextmanager
def _frames(model: nn.Module, n: int):
    """The model runs ``n`` frames in this block."""
    old = set_num_frames(model, n)
    try:
        yield
    finally:
        set_num_frames(model, old)


def _param_name(model: nn.Module, param: nn.Parameter) -> str:
    return next(n for n, p in model.named_parameters() if p is param)


def _timesformer_view(model: nn.Module, x: torch.Tensor, seg: slice) -> torch.Tensor:
    te = base_model(model).embeddings.time_embeddings  # [1, T, D]
    name = _param_name(model, te)
    with _frames(model, seg.stop - seg.start):
        out = torch.func.functional_call(model, {name: te[:, seg]}, (x[:, seg],))
    return out.logits


def patch_side(config) -> int:
    """Patches per side of a frame (square frames, as the three families take)."""
    patch = config.tubelet_size[1] if config.model_type == "vivit" else config.patch_size
    return config.image_size // patch


def _token_keep(config, batch: int, seg: slice, device) -> torch.Tensor:
    """[B, T'K] True for the tubelet tokens of the slots in ``seg`` (tokens ordered
    (t', h, w), as both families' Conv3d embedding flattens them)."""
    slots = config.num_frames // tubelet_t(config)
    keep = torch.zeros(slots, patch_side(config) ** 2, dtype=torch.bool, device=device)
    keep[seg] = True
    return keep.flatten().expand(batch, -1)


def _vivit_view(model: nn.Module, x: torch.Tensor, seg: slice) -> torch.Tensor:
    """The CLS token and the view's tubelet tokens only (positions added before the
    others are dropped): the same CLS output as a key mask over the others (every query
    ignores the masked keys), without computing the dropped tokens' rows."""
    base = base_model(model)
    keep = _token_keep(base.config, 1, seg, x.device)[0]
    hidden = base.embeddings(x)  # [B, 1 + T'K, D]
    hidden = torch.cat([hidden[:, :1], hidden[:, 1:][:, keep]], dim=1)
    for layer in base.layers:
        hidden = layer(hidden, None)
    return model.classifier(base.layernorm(hidden)[:, 0])


def _videomae_view(model: nn.Module, x: torch.Tensor, seg: slice) -> torch.Tensor:
    base = base_model(model)
    keep = _token_keep(base.config, x.shape[0], seg, x.device)
    hidden = base(pixel_values=x, bool_masked_pos=~keep).last_hidden_state
    pooled = model.fc_norm(hidden.mean(dim=1)) if model.fc_norm is not None else hidden[:, 0]
    return model.classifier(pooled)


_VIEWS = {"timesformer": _timesformer_view, "vivit": _vivit_view, "videomae": _videomae_view}


def temporal_tokens(model: nn.Module) -> tuple[int, int]:
    """(temporal tokens T', frames per token) of a Hugging Face video model."""
    cfg = base_model(model).config
    t = 1 if family(model) == "timesformer" else tubelet_t(cfg)
    return cfg.num_frames // t, t


def hf_view_logits(model: nn.Module, x: torch.Tensor, seg: slice) -> torch.Tensor:
    """Logits [B, C] of a Hugging Face video classifier on the temporal tokens ``seg``
    (slot units: frames for TimeSformer, tubelets for ViViT / VideoMAE) of clips ``x``
    [B, T, C, H, W]; frames outside the view do not change them."""
    fam = family(model)
    if fam is None or not hasattr(model, "classifier"):
        raise TypeError(
            f"temporal views need a Hugging Face video classifier, got {type(model).__name__}"
        )
    with views_untapped(), _no_checkpointing(model):
        return _VIEWS[fam](model, x, seg)


@contextlib.contextmanager
def _no_checkpointing(model: nn.Module):
    """A view runs without activation checkpointing: a replay in backward would run
    outside the view's settings (TimeSformer's frame count, the untapped layer)."""
    layers = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False) is True]
    try:
        for m in layers:
            m.gradient_checkpointing = False
        yield
    finally:
        for m in layers:
            m.gradient_checkpointing = True
