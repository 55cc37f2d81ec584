"""Clip transforms that move the guidance grid together with the pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rsexp.core.frames import FRAME_MEAN, FRAME_STD

MEAN = torch.tensor(FRAME_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(FRAME_STD).view(1, 3, 1, 1)


def to_float(video: torch.Tensor) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> normalised float [T, 3, H, W]."""
    return (video.permute(0, 3, 1, 2).float() / 255.0 - MEAN) / STD


def crop_mask(
    mask: torch.Tensor, box: tuple[float, ...], frame_hw: tuple[int, int], grid: int
) -> torch.Tensor:
    """Move a guidance mask through a crop of a frame of any shape.

    mask: [T, grid * grid] bool on the full ``frame_hw`` = (H, W) frame; box: (y0, x0, h, w)
    the crop in pixels of that frame. A cell of the cropped frame is positive when at
    least half of its area was positive before; a frame whose object is cropped out
    becomes empty and is skipped by the spatial loss. The grid is rasterised at 16 x 16
    samples per cell, whatever the frame size, so the cost does not grow with resolution.
    """
    T = mask.shape[0]
    H, W = frame_hw
    r = grid * 16
    pix = mask.view(T, 1, grid, grid).float()
    pix = F.interpolate(pix, size=(r, r), mode="nearest")
    y0, x0, h, w = box
    ys, xs = round(y0 / H * r), round(x0 / W * r)
    ye, xe = max(ys + 1, round((y0 + h) / H * r)), max(xs + 1, round((x0 + w) / W * r))
    frac = F.adaptive_avg_pool2d(pix[:, :, ys:ye, xs:xe], (grid, grid)).view(T, grid * grid)
    return frac >= 0.5


def remap_mask(mask: torch.Tensor, box: tuple[int, int, int, int], size: int, grid: int):
    """:func:`crop_mask` on a square frame of side ``size``."""
    return crop_mask(mask, box, (size, size), grid)


class SpatialAugment:
    """Random resized crop (scale ``min_scale``..1, square) and optional horizontal flip.

    The input may be larger than ``size`` (real data is cached at 8/7 of the frame size,
    the usual 256 -> 224); the crop is resized to ``size`` x ``size``. Draws from the
    generator it is given, so a clip's augmentation is a function of
    (seed, epoch, index) and a resumed run repeats it exactly.
    """

    def __init__(self, size: int, grid: int, min_scale: float = 0.6, hflip: bool = True):
        self.size, self.grid, self.min_scale, self.hflip = size, grid, min_scale, hflip

    def __call__(self, video: torch.Tensor, mask: torch.Tensor, gen: torch.Generator):
        """video [T, 3, H, W] float, mask [T, N] bool -> both transformed."""
        s = video.shape[-1]  # square input, any side
        scale = self.min_scale + (1 - self.min_scale) * torch.rand((), generator=gen).item()
        side = max(self.grid, int(round(s * scale**0.5)))
        y0 = int(torch.randint(0, s - side + 1, (), generator=gen))
        x0 = int(torch.randint(0, s - side + 1, (), generator=gen))
        video = video[:, :, y0 : y0 + side, x0 : x0 + side]
        video = F.interpolate(
            video, size=(self.size, self.size), mode="bilinear", align_corners=False
        )
        mask = remap_mask(mask, (y0, x0, side, side), s, self.grid)
        if self.hflip and torch.rand((), generator=gen).item() < 0.5:
            video = video.flip(-1)
            g = self.grid
            mask = mask.view(-1, g, g).flip(-1).reshape(-1, g * g)
        return video, mask
