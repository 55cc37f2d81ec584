"""Map CLS->patch attention from the model's K-patch grid onto the N-cell guidance grid."""

from __future__ import annotations

import torch
from torch import nn


def _overlap_1d(k: int, g: int) -> torch.Tensor:
    """[g, k]: fraction of patch interval i (of k) that lies in cell interval j (of g)."""
    edges_k = torch.arange(k + 1, dtype=torch.float64) / k
    edges_g = torch.arange(g + 1, dtype=torch.float64) / g
    lo = torch.maximum(edges_g[:-1, None], edges_k[None, :-1])
    hi = torch.minimum(edges_g[1:, None], edges_k[None, 1:])
    return (hi - lo).clamp_min(0) * k


def area_pool_matrix(patch_grid: tuple[int, int], guidance_grid: tuple[int, int]) -> torch.Tensor:
    """[N, K] matrix W with W[n, k] = share of patch k's area inside guidance cell n.

    Every column sums to 1, so ``attn @ W.T`` moves each patch's attention mass onto the
    cells it covers and total mass is conserved.
    """
    (kh, kw), (gh, gw) = patch_grid, guidance_grid
    return torch.kron(_overlap_1d(kh, gh), _overlap_1d(kw, gw)).float()


class AttentionToGrid(nn.Module):
    """Turn [..., K] CLS->patch attention into a distribution over the N guidance cells.

    ``mode="area"`` (default) area-pools the attention mass onto the guidance grid, the
    sound choice when K != N. ``mode="pad_truncate"`` is the paper's form (§2.3, setup:
    "padding p with zeros (if K < N) or truncating (if K > N)"), kept as an option even
    though truncating a 14x14 map to 16 values keeps the top-left row of patches only.
    """

    def __init__(self, patch_grid: tuple[int, int], guidance_grid: tuple[int, int], mode="area"):
        super().__init__()
        if mode not in ("area", "pad_truncate"):
            raise ValueError(f"attn_to_grid must be 'area' or 'pad_truncate', got {mode!r}")
        self.mode = mode
        self.num_patches = patch_grid[0] * patch_grid[1]
        self.num_cells = guidance_grid[0] * guidance_grid[1]
        self.identity = tuple(patch_grid) == tuple(guidance_grid)
        self.register_buffer("pool", area_pool_matrix(patch_grid, guidance_grid), persistent=False)

    def forward(self, attn: torch.Tensor) -> torch.Tensor:
        attn = attn / attn.sum(dim=-1, keepdim=True).clamp_min(1e-12)  # normalise over K
        if self.identity:
            return attn
        if self.mode == "area":
            return attn @ self.pool.to(attn.dtype).T
        k, n = self.num_patches, self.num_cells
        if k < n:
            return torch.nn.functional.pad(attn, (0, n - k))
        return attn[..., :n]
