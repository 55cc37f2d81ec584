"""Name-keyed model registry (timm's ``register_model`` pattern)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from rsexp.core.errors import UnknownNameError  # noqa: F401 (raised here)
from rsexp.core.settings import ModelConfig, SegmentsConfig

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(
    cfg: ModelConfig,
    *,
    num_classes: int,
    num_frames: int,
    img_size: int,
    guidance_grid: int = 4,
    segments: SegmentsConfig | None = None,
) -> nn.Module:
    """Build the registered model ``cfg.name``; an unknown name raises with the valid names.

    Args:
        cfg: the model's settings, taken whole.
        num_classes, num_frames, img_size, guidance_grid: the data's shape.
        segments: the temporal segments of the three-level loss (paper §2.3.2).
    """
    if cfg.name not in _MODELS:
        raise UnknownNameError(
            f"model.name: unknown model {cfg.name!r}; valid models: {', '.join(list_models())}"
        )
    return _MODELS[cfg.name](
        cfg,
        num_classes=num_classes,
        num_frames=num_frames,
        img_size=img_size,
        guidance_grid=guidance_grid,
        segments=segments or SegmentsConfig(),
    )
