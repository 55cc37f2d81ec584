"""What every video model returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class VideoOutput:
    """Outputs of a video model for a batch of B clips of T frames.

    Attributes:
        logits: [B, C] clip logits (the narrative view).
        level_logits: ``{"im", "ctx", "nar"}`` -> [B, C] logits of the immediate,
            contextual and narrative segments (paper §2.3.2).
        attn: [B, T, N] CLS->patch attention of the supervised spatial layer, mean over
            heads, as a distribution over the N guidance cells, one per frame.
    """

    logits: torch.Tensor
    level_logits: dict[str, torch.Tensor]
    attn: torch.Tensor
