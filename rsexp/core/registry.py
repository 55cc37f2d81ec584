"""Name-keyed registries (timm's ``register_model`` pattern), one per kind of extension:
models here; datasets (:mod:`rsexp.data.registry`), guidance annotators
(:mod:`rsexp.guidance.annotators`) and trackers (:mod:`rsexp.track.tracker`) beside
their kinds. An entry is a spec that carries its own facts (a model's label and sizes
beside its builder, as timm keeps ``default_cfgs`` beside ``register_model``); an
unknown name raises with the valid ones; a name registered twice is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from torch import nn

from rsexp.core.errors import UnknownNameError  # noqa: F401 (raised here)
from rsexp.core.plugins import broken_plugins, load_entry_points
from rsexp.core.settings import ModelConfig, SegmentsConfig

T = TypeVar("T")


class Registry(Generic[T]):
    """Specs of one kind by name. ``key``: the config key that names one (its errors say
    which key held the unknown name). Installed plugins are loaded when a registry is
    first consulted (:func:`load_entry_points`)."""

    def __init__(self, kind: str, key: str):
        self.kind, self.key = kind, key
        self._specs: dict[str, T] = {}

    def add(self, name: str, spec: T) -> T:
        if name in self._specs:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._specs[name] = spec
        return spec

    def get(self, name: str) -> T:
        load_entry_points()
        if name not in self._specs:
            broken = broken_plugins()
            raise UnknownNameError(
                f"{self.key}: unknown {self.kind} {name!r}; valid {self.kind}s: "
                f"{', '.join(self.names())}"
                + (f"; plugins that did not load: {'; '.join(broken)}" if broken else "")
            )
        return self._specs[name]

    def names(self) -> list[str]:
        load_entry_points()
        return sorted(self._specs)

    def __contains__(self, name: object) -> bool:
        load_entry_points()
        return name in self._specs

    def __iter__(self) -> Iterator[T]:
        return iter(self._specs[n] for n in self.names())


@dataclass(frozen=True)
class ModelSpec:
    """A video model rsexp can train with RS.

    The contract of ``build``: ``build(cfg: ModelConfig, *, num_classes, num_frames,
    img_size, guidance_grid, segments) -> nn.Module`` whose ``forward(x, level_grad=True)``
    takes ``x`` [B, T, C, H, W] float frames and returns a
    :class:`~rsexp.core.models.output.VideoOutput`: clip logits [B, C], the immediate /
    contextual / narrative view logits (each view sees only its frames, paper §2.3.2) and
    the supervised layer's CLS->patch attention [B, T, N] on the guidance grid (each row
    sums to 1). ``level_grad=False``: the two shorter views need no graph.
    ``tests/test_models.py`` runs every registered model through it.
    """

    name: str
    build: Callable[..., nn.Module]
    label: str  # how tables and figures name it
    # ModelConfig values of the paper's size (§3.1, Table 1) for the real datasets, and
    # of the size rsexp paper uses on the embedded synthetic data
    paper_size: dict = field(default_factory=dict)
    small_size: dict = field(default_factory=dict)
    pretrained: bool = False  # loads model.pretrained weights
    origin: str = "rsexp"  # who registered it (a plugin's package)
    # ``example(folder) -> {model key: value}``: the settings of a small working instance,
    # for the contract tests in tests/test_models.py (a model read from files writes a
    # tiny one into ``folder``); None: the registered defaults build one.
    example: Callable[[Path], dict] | None = None


MODELS: Registry[ModelSpec] = Registry("model", "model.name")


def register_model(
    fn: Callable[..., nn.Module] | None = None,
    *,
    name: str | None = None,
    label: str | None = None,
    paper_size: dict | None = None,
    small_size: dict | None = None,
    pretrained: bool = False,
    example: Callable[[Path], dict] | None = None,
):
    """Register a model builder (``@register_model`` or ``@register_model(label=...)``);
    its name is the function's unless given. The keywords are :class:`ModelSpec`'s
    facts."""

    def add(f: Callable[..., nn.Module]):
        key = name or f.__name__
        MODELS.add(
            key,
            ModelSpec(
                key,
                f,
                label or key,
                dict(paper_size or {}),
                dict(small_size or {}),
                pretrained,
                f.__module__.split(".")[0],
                example,
            ),  # fmt: skip
        )
        return f

    return add(fn) if fn is not None else add


def list_models() -> list[str]:
    return MODELS.names()


def model_spec(name: str) -> ModelSpec:
    return MODELS.get(name)


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
        num_classes: the data's number of classes.
        num_frames: frames per clip.
        img_size: the frames' side, in pixels.
        guidance_grid: g, the guidance's g x g grid.
        segments: the temporal segments of the three-level loss (paper §2.3.2).
    """
    return MODELS.get(cfg.name).build(
        cfg,
        num_classes=num_classes,
        num_frames=num_frames,
        img_size=img_size,
        guidance_grid=guidance_grid,
        segments=segments or SegmentsConfig(),
    )
