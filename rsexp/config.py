"""One typed config tree: frozen dataclasses, loaded from YAML, dotted overrides.

Every setting has exactly one default, here. A YAML file (``sweeps/<dataset>.yaml``)
overrides some of them; ``key=value`` arguments override the YAML. An unknown key
or a value of the wrong type raises :class:`ConfigError` naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rsexp.core.settings import (
    ConfigError,
    LossConfig,
    ModelConfig,
    SegmentsConfig,
)
from rsexp.core.settings import check as _check

__all__ = ["Config", "ConfigError", "LossConfig", "ModelConfig", "SegmentsConfig", "load_config"]


@dataclass(frozen=True)
class SyntheticConfig:
    """The embedded procedurally generated benchmark (``rsexp/data/synthetic.py``)."""

    num_train: int = 640
    num_val: int = 480  # held out for val/* (model selection)
    num_test: int = 480  # a separately generated test set for test/* (reported only)
    num_classes: int = 8
    num_distractors: int = 2
    object_size: int = 5
    noise: float = 0.08
    seed: int = 0

    def __post_init__(self):
        _check(self.num_train > 0 and self.num_val > 0, "data.synthetic", "sizes must be > 0")
        _check(self.num_test >= 0, "data.synthetic.num_test", "must be >= 0")
        _check(2 <= self.num_classes <= 8, "data.synthetic.num_classes", "must be in [2, 8]")
        _check(self.num_distractors >= 0, "data.synthetic.num_distractors", "must be >= 0")


@dataclass(frozen=True)
class DataConfig:
    name: str = "synthetic"
    root: str = "data"
    num_frames: int = 8
    frame_size: int = 32
    batch_size: int = 32
    num_workers: int = 0
    # Spatial augmentation (random resized crop + horizontal flip); the guidance grid is
    # transformed with the pixels. Off by default: on the synthetic data a flip changes
    # the class (left vs. right motion).
    augment: bool = False
    hflip: bool = False
    # Real datasets: which official split / fold (UCF101 1-3, UCF50 group-wise fold 1-5,
    # Desktop Assembly split file k; SSv2 has one). Its evaluation side is the test split
    # (test/*, reported, never used to choose).
    split: int = 1
    # Share of the training side held out as the validation split (val/*: sweep
    # objective, pruning, best epoch), carved whole by actor group for UCF (clips of a
    # group share actors and scenes) and by video elsewhere, seeded by val_seed. 0 = none:
    # train on the whole training side (the sweep's confirmation runs).
    val_fraction: float = 0.2
    val_seed: int = 0
    # Candidate frames cached per temporal segment of a training clip; each epoch picks
    # one at random (TSN-style jitter). 1 = the same uniformly spaced frames every epoch.
    temporal_jitter: int = 2
    # Decoded-clip cache; "" = <root>/<name>/cache. Frames stored as "jpeg" (quality 90,
    # ~5x smaller) or raw "npy". Processes decoding it; 0 = all cores.
    cache_dir: str = ""
    cache_format: str = "jpeg"
    decode_workers: int = 0
    # A video that cannot be decoded (unreadable, truncated, too short): "error" stops
    # after the pass, naming them all (the rest stays cached); "skip" leaves them out.
    bad_videos: str = "error"
    # Action segmentation (Desktop Assembly, paper Table 2): val/test videos are whole,
    # at segmentation_fps, cut into windows of num_frames frames window_stride apart, and
    # every frame is predicted (val/mof, val/edit, val/f1@k). Training clips are the
    # action segments (sample: segments) or windows too, labelled by their centre frame
    # or their majority label. background: class names left out of the segment scores.
    sample: Literal["segments", "windows"] = "segments"
    segmentation_fps: float = 10.0
    window_stride: int = 4
    window_label: Literal["centre", "majority"] = "centre"
    background: tuple[str, ...] = ()
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self):
        _check(self.split >= 1, "data.split", "must be >= 1")
        _check(0 <= self.val_fraction < 1, "data.val_fraction", "must be in [0, 1)")
        _check(self.temporal_jitter >= 1, "data.temporal_jitter", "must be >= 1")
        _check(self.decode_workers >= 0, "data.decode_workers", "must be >= 0")
        _check(self.bad_videos in ("error", "skip"), "data.bad_videos", "must be error or skip")
        _check(self.cache_format in ("jpeg", "npy"), "data.cache_format", "must be jpeg or npy")
        _check(self.num_frames >= 2, "data.num_frames", "must be >= 2")
        _check(self.frame_size >= 8, "data.frame_size", "must be >= 8")
        _check(self.batch_size >= 1, "data.batch_size", "must be >= 1")
        _check(self.num_workers >= 0, "data.num_workers", "must be >= 0")
        _check(self.segmentation_fps > 0, "data.segmentation_fps", "must be > 0")
        _check(self.window_stride >= 1, "data.window_stride", "must be >= 1")


def parse_frame_keys(convention: str) -> float | None:
    """Check a frame-key convention; the rate r of ``fps:<r>``, else None."""
    if convention in ("position", "frame"):
        return None
    head, _, rate = convention.partition(":")
    try:
        r = float(rate)
    except ValueError:
        r = 0.0
    if head != "fps" or not r > 0 or r != r or r == float("inf"):
        raise ValueError(
            f"frame-key convention {convention!r}; valid: position, frame, fps:<r> (r > 0)"
        )
    return r


@dataclass(frozen=True)
class GuidanceNoise:
    """Degrades the oracle annotator's exact cells (the guidance-quality study)."""

    drop: float = 0.0  # each true cell is left out with this probability
    add: float = 0.0  # each other cell is added with this probability

    def __post_init__(self):
        for key in ("drop", "add"):
            v = getattr(self, key)
            _check(0.0 <= v <= 1.0, f"guidance.noise.{key}", "must be in [0, 1]")


@dataclass(frozen=True)
class OpenAIGuidance:
    """``rsexp guidance`` with ``annotator: openai`` (any OpenAI-compatible server).
    The API key comes from ``OPENAI_API_KEY`` only; it is never a setting."""

    model: str = "gpt-4.1-mini"
    base_url: str = ""  # "" = the client's default (or OPENAI_BASE_URL)
    concurrency: int = 8
    timeout_s: float = 60.0
    max_retries: int = 5  # 429 / 5xx / timeouts, with backoff (retry-after honoured)
    image_detail: Literal["low", "high", "auto"] = "high"
    max_side: int = 768  # the grid image's longer side, px
    max_usd: float = 0.0  # stop cleanly once this much is spent; 0 = no cap
    # USD per million tokens; prices change: override them
    price_input_per_mtok: float = 0.40
    price_output_per_mtok: float = 1.60
    # the Batch API (SSv2-sized jobs): half price, answers within 24 h; submitted
    # batches survive a restart (<stem>.batches.json) and are polled every batch_poll_s
    batch: bool = False
    batch_poll_s: float = 60.0
    batch_max_requests: int = 50_000
    batch_price_factor: float = 0.5

    def __post_init__(self):
        _check(self.concurrency >= 1, "guidance.openai.concurrency", "must be >= 1")
        _check(self.timeout_s > 0, "guidance.openai.timeout_s", "must be > 0")
        _check(self.max_retries >= 0, "guidance.openai.max_retries", "must be >= 0")
        _check(self.max_side >= 64, "guidance.openai.max_side", "must be >= 64")
        _check(self.max_usd >= 0, "guidance.openai.max_usd", "must be >= 0")
        _check(self.batch_poll_s > 0, "guidance.openai.batch_poll_s", "must be > 0")
        _check(
            1 <= self.batch_max_requests <= 50_000,
            "guidance.openai.batch_max_requests",
            "must be in [1, 50000] (the Batch API's limit)",
        )


@dataclass(frozen=True)
class GuidanceConfig:
    # Guidance JSON in the authors' released format; "" = the dataset's own file.
    path: str = ""
    grid: int = 4
    # Fraction of training videos whose guidance is used (paper §3.1: 60 % UCF, 10 % SSv2).
    coverage: float = 1.0
    # A sampled frame takes the nearest annotated frame at most this many frames away.
    max_frame_gap: int = 8
    seed: int = 0
    # What the file's frame keys mean: position (the released format: key k of K is
    # video frame k * (n // K)), fps:<r> (k-th frame at r fps), frame (frame numbers).
    frame_keys: str = "position"
    frames_per_video: int = 10  # K, unless the file's metadata names it
    # rsexp guidance: who answers (openai; oracle = the synthetic data's exact cells;
    # motion = the top-k cells by frame-difference energy) and the image it is shown
    annotator: Literal["openai", "oracle", "motion"] = "openai"
    render: Literal["grid", "labelled"] = "grid"
    motion_top_k: int = 3
    noise: GuidanceNoise = field(default_factory=GuidanceNoise)
    openai: OpenAIGuidance = field(default_factory=OpenAIGuidance)

    def __post_init__(self):
        _check(0.0 <= self.coverage <= 1.0, "guidance.coverage", "must be in [0, 1]")
        _check(self.grid >= 1, "guidance.grid", "must be >= 1")
        _check(self.max_frame_gap >= 0, "guidance.max_frame_gap", "must be >= 0")
        _check(self.frames_per_video >= 1, "guidance.frames_per_video", "must be >= 1")
        _check(1 <= self.motion_top_k <= self.grid**2, "guidance.motion_top_k", "1..grid²")
        try:
            parse_frame_keys(self.frame_keys)
        except ValueError as e:
            raise ConfigError(f"guidance.frame_keys: {e}") from None


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0

    def __post_init__(self):
        _check(self.lr > 0, "optim.lr", "must be > 0")
        _check(self.warmup_epochs >= 0, "optim.warmup_epochs", "must be >= 0")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    seed: int = 0
    experiment: str = ""  # "" = the dataset name
    runs_dir: str = "runs"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # bf16 autocast, used on CUDA only.
    amp: bool = True
    threads: int = 0  # torch CPU threads; 0 = torch's default
    # Steps between reads of the loss values from the device (progress bar, non-finite
    # check): a step never waits for the GPU. 0 = auto: every step off CUDA (free
    # there, and a non-finite loss stops before any parameter is touched), 50 on CUDA
    # (a non-finite loss stops at the next read; the last checkpoint is untouched).
    log_every: int = 0
    # torch.compile the model (inductor; the first steps of each shape compile, about a
    # minute on CPU). Same losses as eager within float tolerance (tests/test_train.py).
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"

    def __post_init__(self):
        _check(self.epochs >= 1, "train.epochs", "must be >= 1")
        _check(self.log_every >= 0, "train.log_every", "must be >= 0 (0 = auto)")


BACKENDS = ("local", "mlflow", "wandb")


@dataclass(frozen=True)
class MlflowConfig:
    # "" = the embedded store sqlite:///<train.runs_dir>/mlflow.db (artifacts under runs/).
    # Any tracking URI works (http://host:5000, postgresql://...); pass credentials through
    # MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, never in the URI.
    tracking_uri: str = ""
    experiment: str = ""  # "" = the run's experiment name
    log_checkpoints: bool = False
    # System metrics (system/cpu_utilization_percentage, memory, disk, network; GPU
    # utilisation and memory with nvidia-ml-py) sampled every this many seconds on each
    # run, MLflow's "System metrics" tab; 0 = off.
    system_metrics_s: float = 10.0

    def __post_init__(self):
        _check(self.system_metrics_s >= 0, "track.mlflow.system_metrics_s", "must be >= 0")
        _check(
            not re.search(r"://[^/@]*:[^/@]*@", self.tracking_uri),
            "track.mlflow.tracking_uri",
            "holds a password; no file may keep it, so give it through "
            "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD instead",
        )


@dataclass(frozen=True)
class WandbConfig:
    # auto = online when logged in (WANDB_API_KEY or `wandb login`), offline otherwise
    mode: Literal["auto", "online", "offline"] = "auto"
    project: str = "rsexp"
    entity: str = ""
    group: str = ""
    log_checkpoints: bool = False


@dataclass(frozen=True)
class OverlayConfig:
    num_clips: int = 4  # fixed validation clips rendered every `every` epochs; 0 = off
    every: int = 1
    cell_px: int = 16  # rendered side of one guidance cell, in pixels

    def __post_init__(self):
        _check(self.num_clips >= 0, "track.overlays.num_clips", "must be >= 0")
        _check(self.every >= 1, "track.overlays.every", "must be >= 1")


@dataclass(frozen=True)
class TrackConfig:
    # The local run folder is always written; these mirror it.
    backends: tuple[str, ...] = ("mlflow",)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    overlays: OverlayConfig = field(default_factory=OverlayConfig)
    tags: dict[str, str] = field(default_factory=dict)
    # A backend that stops answering mid-run (a server restarting, a dropped connection)
    # is retried with backoff while training goes on; at the end of the run it is tried
    # for this many seconds more, then left for `rsexp resume` to bring up to date.
    retry_s: float = 30.0

    def __post_init__(self):
        _check(self.retry_s >= 0, "track.retry_s", "must be >= 0")
        for b in self.backends:
            _check(
                b in BACKENDS,
                "track.backends",
                f"unknown backend {b!r}; valid backends: {', '.join(BACKENDS)}",
            )


@dataclass(frozen=True)
class Dimension:
    """One search dimension: uniform on [low, high], log-uniform with ``log``; with
    ``allow_zero`` the sampler may also switch the term off (exactly 0)."""

    low: float = 0.0
    high: float = 1.0
    log: bool = False
    allow_zero: bool = False

    def __post_init__(self):
        _check(self.low <= self.high, "sweep.space", f"low {self.low} > high {self.high}")
        _check(not self.log or self.low > 0, "sweep.space", "log dimensions need low > 0")


@dataclass(frozen=True)
class SearchSpace:
    """Paper knobs. Segments are parametrised so that every sample is valid: the
    immediate segment takes ``immediate`` of the clip at one end, and the centred
    contextual segment ``context_share`` of what is left between the two ends:
    contextual = context_share * (1 - 2 * immediate), so the two never overlap."""

    lambda_s: Dimension = field(default_factory=lambda: Dimension(0.1, 3.0, True, True))
    lambda_t: Dimension = field(default_factory=lambda: Dimension(0.05, 2.0, True, True))
    tau: Dimension = field(default_factory=lambda: Dimension(0.5, 4.0, True))
    immediate: Dimension = field(default_factory=lambda: Dimension(0.1, 0.3))
    context_share: Dimension = field(default_factory=lambda: Dimension(0.6, 1.0))
    coverage: Dimension = field(default_factory=lambda: Dimension(1.0, 1.0))

    def __post_init__(self):
        _check(
            0 < self.immediate.low and self.immediate.high < 0.5,
            "sweep.space.immediate",
            "must lie in (0, 0.5)",
        )
        _check(
            0 < self.context_share.low and self.context_share.high <= 1,
            "sweep.space.context_share",
            "must lie in (0, 1]",
        )
        _check(
            0 <= self.coverage.low and self.coverage.high <= 1,
            "sweep.space.coverage",
            "must lie in [0, 1]",
        )


@dataclass(frozen=True)
class SweepConfig:
    objective: str = "val/top1"
    direction: Literal["maximize", "minimize"] = "maximize"
    trials: int = 6  # total budget, across restarts and workers
    epochs: int = 0  # epochs per trial; 0 = train.epochs
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"
    seed: int = 0
    confirm_seeds: tuple[int, ...] = (0, 1, 2)
    ablation_seeds: tuple[int, ...] = (0,)
    # Optuna heartbeats (RDB storage): a trial silent for grace_period s is failed and
    # re-run, continuing its tracked run from the last checkpoint.
    heartbeat_interval: int = 10
    grace_period: int = 30
    # A storage call that meets a database outage (a PostgreSQL restart, a dropped
    # connection) is retried for this long, then the sweep stops naming the cause.
    storage_retry_s: float = 120.0
    # Stop the sweep when this many trials in a row fail with the same error (a bug or a
    # data problem, not a bad region of the search space); 0 = never.
    stop_after_failures: int = 3
    # The GPU each sweep worker (and each confirmation / paper run) on this machine uses,
    # given to it as CUDA_VISIBLE_DEVICES: "auto" = one visible GPU per worker (more
    # workers than GPUs is an error: cards are shared only on purpose), nothing on a CPU
    # machine; "cpu" = hide the GPUs; "0,1,1" = these ids, one per worker in order.
    devices: str = "auto"
    # Processes (GPUs) per trial: > 1 trains each trial with DDP under torchrun
    # (rsexp.sweep.ddp_trial; rank 0 reports to Optuna and the pruner's decision is
    # broadcast). Confirmation runs stay one process each.
    nproc: int = 1
    space: SearchSpace = field(default_factory=SearchSpace)

    def __post_init__(self):
        _check(self.trials >= 1, "sweep.trials", "must be >= 1")
        _check(self.epochs >= 0, "sweep.epochs", "must be >= 0")
        _check(len(self.confirm_seeds) >= 1, "sweep.confirm_seeds", "needs at least one seed")
        _check(self.stop_after_failures >= 0, "sweep.stop_after_failures", "must be >= 0")
        _check(self.nproc >= 1, "sweep.nproc", "must be >= 1")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)

    @property
    def experiment(self) -> str:
        return self.train.experiment or self.data.name

    @property
    def method(self) -> str:
        """``baseline`` when neither RS term is on, else ``rs``."""
        return "baseline" if self.loss.lambda_s == 0 and self.loss.lambda_t == 0 else "rs"


# ---------------------------------------------------------------------------------------
# dict <-> dataclass with type checking


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        _check(isinstance(value, dict), key, f"expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if origin is Literal:
        choices = typing.get_args(tp)
        _check(value in choices, key, f"must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} does not match {tp}")
    if tp is type(None):
        _check(value is None, key, f"expected null, got {value!r}")
        return None
    if tp is bool:
        _check(isinstance(value, bool), key, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        _check(
            isinstance(value, int) and not isinstance(value, bool),
            key,
            f"expected an integer, got {value!r}",
        )
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        _check(
            isinstance(value, (int, float)) and not isinstance(value, bool),
            key,
            f"expected a number, got {value!r}",
        )
        _check(math.isfinite(value), key, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # tags such as `trial: 3`
        _check(isinstance(value, str), key, f"expected a string, got {value!r}")
        return value
    if origin is dict:
        _check(isinstance(value, dict), key, f"expected a mapping, got {value!r}")
        _, vt = typing.get_args(tp)
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if origin in (tuple, list):
        _check(isinstance(value, (list, tuple)), key, f"expected a list, got {value!r}")
        (arg, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    raise ConfigError(f"{key}: unsupported field type {tp}")


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for k in data:
        if k not in names:
            where = f"{prefix}.{k}" if prefix else k
            raise ConfigError(f"unknown config key '{where}' (valid here: {', '.join(names)})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            key = f"{prefix}.{f.name}" if prefix else f.name
            value = data[f.name]
            if dataclasses.is_dataclass(hints[f.name]) and isinstance(value, dict):
                # a partial override keeps this field's own defaults for the rest
                default = (
                    f.default_factory()
                    if f.default_factory is not dataclasses.MISSING
                    else f.default
                )
                if dataclasses.is_dataclass(default):
                    value = _merge(dataclasses.asdict(default), value)
            kwargs[f.name] = _coerce(value, hints[f.name], key)
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - guarded by the key check above
        raise ConfigError(f"{prefix or 'config'}: {e}") from e


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def to_dict(cfg: Any) -> dict:
    """Nested plain dict (YAML/JSON-safe) of a config dataclass."""
    return dataclasses.asdict(cfg)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"loss": {"tau": 1}}`` -> ``{"loss.tau": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def parse_override(arg: str) -> tuple[str, Any]:
    """``"loss.tau=0.5"`` -> ``("loss.tau", 0.5)``; the value is parsed as YAML."""
    if "=" not in arg:
        raise ConfigError(f"override '{arg}' is not of the form key=value")
    key, raw = arg.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{arg}' has an empty key")
    return key, yaml.safe_load(raw) if raw.strip() else ""


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for i, p in enumerate(parts[:-1]):
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"'{'.'.join(parts[: i + 1])}' is a value, cannot set '{key}'")
        node = nxt
    node[parts[-1]] = value


# loss.preset=released: the released training code's settings, for every key the YAML
# or the command line does not set itself
RELEASED = {
    "lambda_s": 0.15,
    "lambda_t": 0.25,
    "tau": 1.0,
    "consensus": "sharpened",
    "consensus_power": 1 / 0.7,
    "ce_on": "all_levels",
    "spatial_every": 10,
    "segments": {"split": "released"},
}


def _apply_preset(tree: dict) -> None:
    loss = tree.get("loss")
    if not isinstance(loss, dict) or loss.get("preset") != "released":
        return
    for key, value in RELEASED.items():
        if isinstance(value, dict):
            seg = loss.setdefault(key, {})
            if isinstance(seg, dict):
                for k, v in value.items():
                    seg.setdefault(k, v)
        else:
            loss.setdefault(key, value)


def from_dict(data: dict, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    tree = _deep_copy(data)
    for arg in overrides:
        key, value = parse_override(arg)
        _set_dotted(tree, key, value)
    _apply_preset(tree)
    return _build(Config, tree)


def _deep_copy(d: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def _check_duplicates(node, path: str, file: Path) -> None:
    """PyYAML keeps the last of two equal keys silently; a config must not."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            dotted = f"{path}.{k.value}" if path else str(k.value)
            if k.value in seen:
                raise ConfigError(
                    f"{file}, line {k.start_mark.line + 1}: duplicate key '{dotted}'"
                )
            seen.add(k.value)
            _check_duplicates(v, dotted, file)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            _check_duplicates(v, path, file)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        _check_duplicates(yaml.compose(text, Loader=yaml.SafeLoader), "", path)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if data is None:
        raise ConfigError(
            f"{path}: the file is empty; give at least one setting ({{}} means all defaults)"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Load ``path`` (or the defaults) and apply dotted ``key=value`` overrides. An error
    names the override that caused it, or else the file."""
    data = load_yaml(path) if path else {}
    try:
        return from_dict(data, overrides)
    except ConfigError as e:
        raise ConfigError(f"{_blame(e, path, overrides)}{e}") from None


def _blame(e: ConfigError, path, overrides) -> str:
    """``"override k=v: "`` when the key in error was set on the command line (the key
    itself, a parent, or a child), else ``"<path>: "``."""
    m = re.match(r"unknown config key '([^']+)'|([\w.\[\]]+):", str(e))
    key = (m[1] or m[2]) if m else ""
    for arg in reversed(list(overrides)):
        k = arg.split("=", 1)[0].strip()
        if k == key or key.startswith(k + ".") or k.startswith(key + "."):
            return f"override {arg}: "
    return f"{path}: " if path else ""


def dump_yaml(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
