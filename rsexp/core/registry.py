"""Name-keyed model registry (timm's ``register_model`` pattern)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; an unknown name raises with the valid names."""
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    return _MODELS[name](**kwargs)
