"""How rsexp normalises frames, and how a model trained on other statistics sees them."""

from __future__ import annotations

import torch
from torch import nn

# every dataset's frames are normalised with these (the K400 TimeSformer's statistics)
FRAME_MEAN, FRAME_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)


class FrameNorm(nn.Module):
    """rsexp's normalised frames (``FRAME_MEAN``, ``FRAME_STD``) -> a pretrained model's
    statistics, as one scale and shift: ``x' = (x * FRAME_STD + FRAME_MEAN - mean) /
    std`` on [B, T, C, H, W]; None keeps rsexp's."""

    def __init__(self, mean=None, std=None):
        super().__init__()
        r_mean = torch.tensor(FRAME_MEAN).view(1, 1, 3, 1, 1)
        r_std = torch.tensor(FRAME_STD).view(1, 1, 3, 1, 1)
        mean = r_mean if mean is None else torch.tensor(mean).view(1, 1, 3, 1, 1)
        std = r_std if std is None else torch.tensor(std).view(1, 1, 3, 1, 1)
        self.register_buffer("scale", r_std / std, persistent=False)
        self.register_buffer("shift", (r_mean - mean) / std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift  # [B, T, C, H, W]
