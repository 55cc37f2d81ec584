"""The config tree's schema: frozen dataclasses, one default per setting, each checked
on construction (a bad value raises :class:`ConfigError` naming its dotted key). The
loader (:mod:`rsexp.config.loader`) builds them from YAML and overrides."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from rsexp.config.space import Dimension, SweepConfig, paper_space
from rsexp.core.settings import (
    ConfigError,
    LossConfig,
    ModelConfig,
    SegmentsConfig,
)
from rsexp.core.settings import check as _check

__all__ = [
    "Config",
    "ConfigError",
    "Dimension",
    "LossConfig",
    "ModelConfig",
    "SegmentsConfig",
    "SweepConfig",
    "paper_space",
]


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
    # a registered dataset: synthetic, ucf50, ucf101, ssv2, desktop_assembly; your own
    # videos: folder (data.path/<class>/<video>), list (list files), segments (videos
    # labelled per frame); or a plugin's
    name: str = "synthetic"
    root: str = "data"
    # Your own videos (folder, list, segments): the folder that holds them; guidance keys
    # are each video's path relative to it without its suffix (up/v03)
    path: str = ""
    # ... without split folders or lists, the test side: this share of each class's
    # videos (seeded by val_seed), whole groups of data.group_by kept on one side
    test_fraction: float = 0.2
    # a regex whose first group (or whole match) names a video's group in its relative
    # path (the same subject, scene or source video: kept on one side of every split);
    # "" = every video its own group
    group_by: str = ""
    # a file of class names, one per line, in label order ("" = the class folders'
    # names, sorted; for list files, the labels' names, sorted)
    classes: str = ""
    # list files (data.name=list): "relative/path label" lines (label: an integer or a
    # class name), or a CSV with a header path,label[,split]; paths relative to data.path
    train_list: str = ""
    val_list: str = ""
    test_list: str = ""
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
    # a plugin dataset's own typed settings, data.<name>.* (written under data: <name>:
    # or data.<name>.key=value; kept here by name, each the plugin's dataclass)
    sections: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        _check(0 < self.test_fraction < 1, "data.test_fraction", "must be in (0, 1)")
        if self.group_by:
            try:
                re.compile(self.group_by)
            except re.error as e:
                raise ConfigError(f"data.group_by: not a regular expression: {e}") from None
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
    # (a registered annotator: openai, oracle, motion, or a plugin's; rsexp.guidance)
    annotator: str = "openai"
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
    # rendered side of one guidance cell, in pixels: a 4 x 4 grid makes frames of 160 px,
    # shown 4 to a row (an 8-frame clip is a 2 x 4 grid, 670 x 424 px)
    cell_px: int = 40

    def __post_init__(self):
        _check(self.num_clips >= 0, "track.overlays.num_clips", "must be >= 0")
        _check(self.every >= 1, "track.overlays.every", "must be >= 1")


@dataclass(frozen=True)
class TrackConfig:
    # The local run folder is always written; these mirror it (registered trackers:
    # local, mlflow, wandb, or a plugin's).
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
        # a backend's name is checked against the registered trackers (a plugin may add
        # one) before any run folder exists: rsexp.experiment.build.preflight
        _check(self.retry_s >= 0, "track.retry_s", "must be >= 0")


@dataclass(frozen=True)
class Config:
    # modules to import in every process a run or sweep starts (spawned workers and
    # torchrun ranks too): a plugin registers its datasets, models, annotators, trackers
    # and config sections there. Installed plugins (the rsexp.plugins entry points) are
    # loaded without being listed.
    plugins: tuple[str, ...] = ()
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
