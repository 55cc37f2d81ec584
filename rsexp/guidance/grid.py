"""Grid cells <-> binary masks on the g x g guidance grid (row-major, 0-based)."""

from __future__ import annotations

import numpy as np


def cells_to_mask(cells, grid: int = 4) -> np.ndarray:
    """[(row, col), ...] -> [grid * grid] bool mask, cell (r, c) at index r * grid + c."""
    mask = np.zeros(grid * grid, dtype=bool)
    for r, c in cells:
        mask[r * grid + c] = True
    return mask


def mask_to_cells(mask, grid: int = 4) -> list[list[int]]:
    """[grid * grid] or [grid, grid] mask -> sorted [[row, col], ...] of the positive cells."""
    flat = np.asarray(mask, dtype=bool).reshape(grid * grid)
    return [[int(i // grid), int(i % grid)] for i in np.flatnonzero(flat)]
