"""rsexp: Reasoning Supervision for video transformers, and the experiments around it.

The public API, for your own models and training loops (everything else in the package
is internal and may change)::

    import rsexp

    rs = rsexp.ReasoningSupervision(lambda_s=1.0, lambda_t=0.5, tau=1.0)
    store = rsexp.GuidanceStore.load("guidance.json", grid=4, frame_keys="frame")
    with rsexp.attention_tap(model) as tap:              # model: yours, HF's or timm's
        logits = model(pixel_values=video).logits        # [B, C]
        masks = rsexp.guidance_masks(store, video_ids, frame_indices)   # [B, T, 16]
        terms = rs(logits, labels, tap.attn, masks, rs.views(model, video))
    terms["loss"].backward()                             # loss, loss/ce, loss/spatial, ...

Names are resolved on first use, so ``import rsexp`` stays light (no torch until one is
used).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    # RS in any loop
    "attention_tap": "rsexp.core.tap",
    "AttentionTap": "rsexp.core.tap",
    "register_tap": "rsexp.core.tap_sites",
    "TapSite": "rsexp.core.tap_sites",
    "temporal_views": "rsexp.core.supervision",
    "ReasoningSupervision": "rsexp.core.supervision",
    "GuidanceStore": "rsexp.guidance.store",
    "guidance_masks": "rsexp.guidance.store",
    # the losses and metrics (paper §2.3, §3)
    "spatial_alignment_loss": "rsexp.core.losses",
    "temporal_consistency_loss": "rsexp.core.losses",
    "topk_correct": "rsexp.core.metrics",
    "segmentation_scores": "rsexp.core.metrics",
    "SegmentationMeter": "rsexp.core.metrics",
    "SegmentsConfig": "rsexp.core.settings",
    "segment_slices": "rsexp.core.segments",
    "slices_for": "rsexp.core.segments",
    # your own model under rsexp's runs and sweeps
    "register_model": "rsexp.core.registry",
    "create_model": "rsexp.core.registry",
    "list_models": "rsexp.core.registry",
    "VideoOutput": "rsexp.core.models.output",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'rsexp' has no attribute {name!r}")
    module = importlib.import_module(_PUBLIC[name])
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
