"""``attention_tap``: the CLS->patch attention of one layer of any supported video model.

One forward hook on that layer's attention module recomputes only what RS needs (the
CLS query against the layer's keys, one row per head) from the module's own input and
weights, so every other layer, and the tapped layer's own output, keep fused attention
(SDPA). The recomputation is differentiable: a loss on ``tap.attn`` trains the model.

Adapters say where a model family's layer is and how its rows become ``[B, T, K]``:
rsexp's own models and timm ViTs here; Hugging Face's TimeSformer, ViViT and VideoMAE in
:mod:`rsexp.core.hf_video`; others with :func:`register_tap`.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from rsexp.core import hf_video  # noqa: F401  (registers Hugging Face's families)
from rsexp.core.tap_sites import in_view, locate_site


class AttentionTap(contextlib.AbstractContextManager):
    """A registered tap; ``.attn`` is the last forward's attention.

    Use as a context manager (``with attention_tap(model) as tap: ...``) or keep the
    handle and :meth:`close` it. Every forward of the tapped layer is recomputed alike
    (activation checkpointing replays the hook in backward), and the first one after
    each forward of the model is kept: the whole clip, not a later pass over a segment.
    Segment views (:func:`views_untapped`) are neither computed nor kept.
    """

    def __init__(self, model: nn.Module, layer: int = -1):
        self.model, self.layer = model, layer
        self.site = locate_site(model, layer)
        self._attn: torch.Tensor | None = None
        self._fresh = False
        self._batch = 0
        self._handles = [
            model.register_forward_pre_hook(self._on_model, with_kwargs=True),
            self.site.module.register_forward_hook(self._on_layer, with_kwargs=True),
        ]

    def _on_model(self, module, args, kwargs):
        if in_view():
            return
        x = args[0] if args else next(iter(kwargs.values()), None)
        self._batch = x.shape[0] if torch.is_tensor(x) else 0
        self._fresh = True

    def _on_layer(self, module, args, kwargs, output):
        if in_view():
            return
        hidden = args[0] if args else kwargs.get("hidden_states")
        mask = args[1] if len(args) > 1 else kwargs.get("attention_mask")
        # computed on every call alike: activation checkpointing replays this hook in
        # backward and needs the same operations as the forward had
        attn = self.site.arrange(
            self.site.rows(module, hidden, mask if torch.is_tensor(mask) else None), self._batch
        )
        if self._fresh:
            self._attn, self._fresh = attn, False

    @property
    def attn(self) -> torch.Tensor:
        """[B, T, K] CLS->patch attention of the tapped layer, mean over heads, per frame
        (K: the layer's patches; see the adapters' notes for tubelets and models without
        a CLS token)."""
        if self._attn is None:
            raise RuntimeError("attention_tap: the model has not run since the tap was opened")
        return self._attn

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __exit__(self, *exc) -> None:
        self.close()


def attention_tap(model: nn.Module, layer: int = -1) -> AttentionTap:
    """Tap the CLS->patch attention of ``model``'s spatial layer ``layer``.

    Args:
        model: rsexp's TSViT / ViViT / TimeSformer, a timm ViT, a Hugging Face
            TimeSformer / ViViT / VideoMAE (base model or video classifier), or any
            model with a :func:`register_tap` adapter.
        layer: which spatial layer, Python-style (-1 = the last).

    Returns:
        An :class:`AttentionTap`: a context manager and handle whose ``.attn`` is
        [B, T, K] after each forward.

    Example::

        with attention_tap(model) as tap:
            logits = model(video).logits
            loss = rs(logits, labels, tap.attn, masks, views)
    """
    return AttentionTap(model, layer)
