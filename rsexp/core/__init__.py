"""The thin training core: models, losses, segments, step, checkpoints, metrics.

Imports torch, timm, numpy and the standard library only.
"""

import sys


def _import_timm_without_wandb() -> None:
    """Import timm while hiding wandb from it.

    ``timm.utils.summary`` imports wandb opportunistically, for timm's own logging helpers
    which rsexp never calls. Letting it would import wandb into every run, also one that
    tracks to MLflow only; the trackers import their backend lazily, so keep it that way.
    """
    if "wandb" in sys.modules or "timm" in sys.modules:
        return
    sys.modules["wandb"] = None  # makes `import wandb` raise ImportError, which timm catches
    try:
        import timm  # noqa: F401
    finally:
        del sys.modules["wandb"]


_import_timm_without_wandb()
