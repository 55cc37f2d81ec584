"""Building a run from its config: seed, device, model, optimiser, schedule.

:func:`build_run` is the one setup path that ``train``, ``resume`` and the benchmarks
share; the pieces are exposed for tests and benchmarks that need only one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

import rsexp.core.models  # noqa: F401  (registers the models)
from rsexp.config import Config, ConfigError, load_plugins
from rsexp.core.models import load_pretrained
from rsexp.core.optim import param_groups
from rsexp.core.registry import create_model, list_models, model_spec
from rsexp.experiment.distributed import Dist, main_first
from rsexp.experiment.inputs import Data, build_data
from rsexp.track.tracker import TRACKERS


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' requested but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(cfg: Config, num_classes: int) -> torch.nn.Module:
    model = create_model(
        cfg.model,
        num_classes=num_classes,
        num_frames=cfg.data.num_frames,
        img_size=cfg.data.frame_size,
        guidance_grid=cfg.guidance.grid,
        segments=cfg.loss.segments,
    )
    if cfg.model.pretrained:
        load_pretrained(model, cfg.model.pretrained)  # which models take them: preflight
    return model


def preflight(cfg: Config) -> None:
    """What a typo or a missing dataset fails on, checked before a run folder, a tracked
    run or an MLflow experiment exists: the model's and the dataset's names, the
    dataset's files, and the model's shape settings (the model is built on the meta
    device: no memory, no weights), so that a wrong setting costs nothing.

    Raises:
        UnknownNameError, DatasetNotFoundError, ConfigError: naming the key.
    """
    from rsexp.data.registry import check_dataset

    load_plugins(cfg.plugins)
    check_dataset(cfg.data)
    for backend in cfg.track.backends:
        TRACKERS.get(backend)
    spec = model_spec(cfg.model.name)  # an unknown name: the valid ones
    if cfg.model.pretrained and not spec.pretrained:
        takes = " or ".join(repr(n) for n in list_models() if model_spec(n).pretrained)
        raise ConfigError(f"model.pretrained: weights load into {takes} only")
    if cfg.model.pretrained and not Path(cfg.model.pretrained).is_file():
        raise FileNotFoundError(f"model.pretrained: no such file: {cfg.model.pretrained}")
    check_model(cfg)


def check_model(cfg: Config) -> None:
    """The model's shape settings against the data's (frame size, frame count, the
    supervised layer, the temporal segments), by building the model on the meta device.

    Raises:
        ConfigError: naming the model, the data's shape and what does not fit.
    """
    model_spec(cfg.model.name)  # an unknown name: the valid ones
    try:
        with torch.device("meta"):
            create_model(
                cfg.model,
                num_classes=2,
                num_frames=cfg.data.num_frames,
                img_size=cfg.data.frame_size,
                guidance_grid=cfg.guidance.grid,
                segments=cfg.loss.segments,
            )
    except ValueError as e:  # a shape the model cannot take (ConfigError is one too)
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(
            f"model.{cfg.model.name} with data.num_frames={cfg.data.num_frames}, "
            f"data.frame_size={cfg.data.frame_size}: {e}"
        ) from None


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW; no weight decay on CLS tokens, position/time embeddings, norms, biases."""
    o = cfg.optim
    return torch.optim.AdamW(
        param_groups(model, o.weight_decay), lr=o.lr, betas=(o.beta1, o.beta2)
    )


@dataclass
class Schedule:
    """Step counts of the warmup + cosine schedule (a function of the config and data)."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    @classmethod
    def of(cls, cfg: Config, num_train: int) -> Schedule:
        per_epoch = -(-num_train // cfg.data.batch_size)
        return cls(
            per_epoch,
            per_epoch * cfg.train.epochs,
            int(round(cfg.optim.warmup_epochs * per_epoch)),
        )


@dataclass
class RunParts:
    """Everything a run trains with, built from its config."""

    cfg: Config
    device: torch.device
    amp: bool
    data: Data
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    dist: Dist = field(default_factory=Dist)  # this process's rank (one run, N processes)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def build_run(cfg: Config, console: Console | None = None, dist: Dist | None = None) -> RunParts:
    """Threads and seed, device, data (decoding the clip cache if needed), model,
    optimiser and schedule, in that order (the order fixes what the seed draws). In a
    distributed run rank 0 builds the data first (the others find the cache warm), each
    rank takes its local GPU, and every rank draws the same initial weights."""
    dist = dist or Dist()
    load_plugins(cfg.plugins)  # a spawned job or a torchrun rank: the plugins here too
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    with main_first(dist):
        data = build_data(cfg, console)
    model = build_model(cfg, len(data.class_names)).to(device)
    if cfg.train.compile:
        # in place: the state dict keeps its keys, so checkpoints load either way
        model.compile(mode=None if cfg.train.compile_mode == "default" else cfg.train.compile_mode)
    return RunParts(
        cfg=cfg,
        device=device,
        amp=cfg.train.amp and device.type == "cuda",
        data=data,
        model=model,
        optimizer=build_optimizer(cfg, model),
        schedule=Schedule.of(cfg, len(data.train)),
        dist=dist,
    )
