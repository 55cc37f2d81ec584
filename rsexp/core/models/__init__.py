"""Registered video models (``tsvit``, ``vivit``, ``timesformer``; builders in
:mod:`~rsexp.core.models.builders`). Every builder takes the :class:`ModelConfig` whole
and the data's shape: ``build(cfg, *, num_classes, num_frames, img_size, guidance_grid,
segments)``.
"""

import rsexp.core._timm  # noqa: F401  (first: timm without wandb)
from rsexp.core.models import (
    builders,  # noqa: F401  (registers the models)
    taps,  # noqa: F401  (how attention_tap reads them)
)
from rsexp.core.models.factorised import FactorisedVideoViT
from rsexp.core.models.output import VideoOutput
from rsexp.core.models.timesformer import TimeSformer, load_pretrained

__all__ = ["FactorisedVideoViT", "TimeSformer", "VideoOutput", "load_pretrained"]
