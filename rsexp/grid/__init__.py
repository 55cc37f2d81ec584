"""A grid of configs -> runs -> tables: a sweep's confirmation stage and ``rsexp paper``
(:mod:`~rsexp.grid.grid`, :mod:`~rsexp.grid.paper`)."""

from rsexp.grid.grid import GridRow, GridRun, Table, run_grid

__all__ = ["GridRow", "GridRun", "Table", "run_grid"]
