"""Import timm while hiding wandb from it (``rsexp.core.models`` imports this first).

``timm.utils.summary`` imports wandb opportunistically, for timm's own logging helpers
which rsexp never calls. Letting it would import wandb into every run, also one that
tracks to MLflow only; the trackers import their backend lazily, so keep it that way.
"""

import sys

if "wandb" not in sys.modules and "timm" not in sys.modules:
    sys.modules["wandb"] = None  # makes `import wandb` raise ImportError, which timm catches
    try:
        import timm  # noqa: F401
    finally:
        del sys.modules["wandb"]
