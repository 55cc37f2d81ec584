"""The core's own knobs: model and loss settings as frozen dataclasses.

The core owns these (it imports nothing of the experiment layer); ``rsexp/config.py``
composes them into the full config tree. Each setting has its one default here, with
where it comes from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key."""


def check(cond: bool, key: str, msg: str) -> None:
    """Raise :class:`ConfigError` naming ``key`` unless ``cond``."""
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def check_finite(key: str, *values: float) -> None:
    check(all(math.isfinite(v) for v in values), key, "must be a finite number")


@dataclass(frozen=True)
class HfConfig:
    """``model.name=hf``: a Hugging Face transformers video classifier (TimeSformer,
    ViViT or VideoMAE), its head re-initialised for the dataset's classes."""

    # A folder written by ``save_pretrained`` (loaded with local_files_only), or a hub
    # id where the machine is online.
    path: str = ""
    # "sdpa" keeps fused attention in every layer but the tapped one (TimeSformer is
    # eager-only in transformers and runs eager whatever this says).
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    # Activation checkpointing of every layer (less memory, one more forward).
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """Backbone settings. The model's name picks a registered builder
    (:mod:`rsexp.core.models`); ``0`` means "the model's own choice" where a model has
    one (``patch_size``, ``tubelet``), stated once in that model's builder."""

    name: str = "tsvit"
    embed_dim: int = 64
    depth: int = 4
    temporal_depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 2.0
    # 0 = the model's own: one patch per guidance cell for TSViT (its g_h x g_w token
    # grid, paper §2.1), a grid twice as fine for ViViT, 8x8 patches for TimeSformer.
    patch_size: int = 0
    # Frames per tubelet; 0 = the model's own (ViViT 2, TSViT and TimeSformer 1).
    tubelet: int = 0
    drop_rate: float = 0.0
    drop_path: float = 0.0
    # Spatial layer whose CLS->patch attention is supervised (negative counts from the end).
    attn_layer: int = -1
    # K != N: "area" pools attention mass onto the guidance grid; "pad_truncate" is the
    # paper's/released code's zero-pad or truncate (§2.3), kept for comparison.
    attn_to_grid: Literal["area", "pad_truncate"] = "area"
    # Local file with ImageNet ViT-B/16 or K400 TimeSformer weights ("" = random init).
    pretrained: str = ""
    # TSViT's frame encoder: "" = its own; timm:<name> = a timm image ViT (e.g.
    # timm:vit_small_patch16_224), fused attention kept, the supervised layer tapped.
    frame_encoder: str = ""
    # Its weights: a local timm checkpoint file, "timm" (timm's cache or hub, online
    # machines only) or "" (random init).
    frame_encoder_weights: str = ""
    hf: HfConfig = field(default_factory=HfConfig)
    # a plugin model's own typed settings, model.<name>.* (register_section), by name
    sections: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        check(self.embed_dim % self.num_heads == 0, "model.embed_dim", "must divide by num_heads")
        check(self.depth >= 1, "model.depth", "must be >= 1")
        check(self.temporal_depth >= 0, "model.temporal_depth", "must be >= 0")
        check(self.patch_size >= 0, "model.patch_size", "must be >= 0")
        check(self.tubelet >= 0, "model.tubelet", "must be >= 0")
        check_finite("model.mlp_ratio", self.mlp_ratio)
        check(0 <= self.drop_rate < 1, "model.drop_rate", "must be in [0, 1)")
        check(0 <= self.drop_path < 1, "model.drop_path", "must be in [0, 1)")


@dataclass(frozen=True)
class SegmentsConfig:
    """Paper §2.3.2: immediate = first 20 %, contextual = middle 60 %, narrative = all."""

    immediate: float = 0.2
    contextual: float = 0.6
    # Released code takes the immediate segment from the end of the clip.
    immediate_at: Literal["start", "end"] = "start"
    # "ratio": the fractions above (paper). "released": the released model's split,
    # adaptive to the clip length (immediate = last half / quarter / eighth of the clip,
    # contextual = middle half or quarter; rsexp.core.segments.released_slices); the
    # fractions are then unused.
    split: Literal["ratio", "released"] = "ratio"

    def __post_init__(self):
        check(0.0 < self.immediate <= 1.0, "loss.segments.immediate", "must be in (0, 1]")
        check(0.0 < self.contextual <= 1.0, "loss.segments.contextual", "must be in (0, 1]")
        # the contextual segment is centred: it stays clear of the immediate one (at
        # either end) when immediate <= (1 - contextual) / 2
        check(
            2 * self.immediate + self.contextual <= 1.0 + 1e-9,
            "loss.segments",
            f"immediate {self.immediate:g} and contextual {self.contextual:g} overlap "
            "(need 2 * immediate + contextual <= 1)",
        )


@dataclass(frozen=True)
class LossConfig:
    """total = CE + lambda_s * L_spatial + lambda_t * L_temporal (paper §2.3)."""

    # "paper": every setting below as given. "released": the authors' released training
    # code wherever a setting is not given explicitly: lambda_s 0.15, lambda_t 0.25,
    # tau 1, sharpened consensus (power 1/0.7), CE summed over the three heads, spatial
    # loss every 10th step, the adaptive segment split (applied in rsexp.config).
    preset: Literal["paper", "released"] = "paper"
    # The paper gives no weights (§2.3 only names them); the released train.py's command
    # line defaults are 0.15 / 0.25 (the real-data YAMLs use those). These defaults,
    # 1.0 / 0.5, are for the embedded synthetic benchmark, where bench-rs measured them.
    lambda_s: float = 1.0
    lambda_t: float = 0.5
    tau: float = 1.0
    eps: float = 1e-8
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)
    # "mean" is the paper's consensus (§2.3.2); "sharpened" is the released code's
    # power-sharpened, renormalised consensus.
    consensus: Literal["mean", "sharpened"] = "mean"
    # the released code raises the mean to 1 / js_temperature with js_temperature = 0.7
    consensus_power: float = 1 / 0.7
    # "clip": CE on the clip logits (paper); "all_levels": the sum of the CE of the three
    # heads (released code: cls_immediate + cls_contextual + cls_narrative).
    ce_on: Literal["clip", "all_levels"] = "clip"
    # Spatial loss every k-th training step (paper: 1; released code: 10).
    spatial_every: int = 1

    def __post_init__(self):
        check_finite("loss.lambda_s", self.lambda_s)
        check_finite("loss.lambda_t", self.lambda_t)
        check_finite("loss.tau", self.tau)
        check_finite("loss.consensus_power", self.consensus_power)
        check(self.lambda_s >= 0, "loss.lambda_s", "must be >= 0")
        check(self.lambda_t >= 0, "loss.lambda_t", "must be >= 0")
        check(self.tau > 0, "loss.tau", "must be > 0")
        check(self.eps > 0, "loss.eps", "must be > 0")
        check(self.consensus_power > 0, "loss.consensus_power", "must be > 0")
        check(self.spatial_every >= 1, "loss.spatial_every", "must be >= 1")
