"""``model.name=hf``: a Hugging Face transformers video classifier under RS.

TimeSformer, ViViT and VideoMAE, from a folder written by ``save_pretrained`` (read with
``local_files_only``; a hub id is tried only when the path is not a folder, and needs a
machine online). The head is re-initialised for the dataset's classes; frames are
renormalised with the folder's ``preprocessor_config.json`` statistics when it has one
(else they stay as rsexp normalises them: mean 0.45, std 0.225, the K400 TimeSformer's)
and resized to the model's frame size. How each family's attention and segment views
are read: :mod:`rsexp.core.hf_video`. Registered as a built-in plugin (the
``rsexp.plugins`` entry point ``hf``), so transformers is imported only when used.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from rsexp.core.attn_grid import AttentionToGrid
from rsexp.core.frames import FrameNorm
from rsexp.core.hf_video import (
    FAMILIES,
    base_model,
    hf_view_logits,
    patch_side,
    set_num_frames,
    temporal_tokens,
)
from rsexp.core.models.output import VideoOutput
from rsexp.core.registry import register_model
from rsexp.core.segments import slices_for
from rsexp.core.settings import ConfigError, ModelConfig
from rsexp.core.tap import AttentionTap


class HFVideoModel(nn.Module):
    """A Hugging Face video classifier behind rsexp's model contract
    (:class:`~rsexp.core.registry.ModelSpec`): ``forward(x, level_grad)`` ->
    :class:`~rsexp.core.models.output.VideoOutput`.

    The clip logits are the classifier's own; the supervised layer's attention is
    tapped (:func:`~rsexp.core.tap.attention_tap`) and pooled onto the guidance grid;
    the immediate / contextual views run through
    :func:`~rsexp.core.hf_video.hf_view_logits`. Frames come in as rsexp's data gives
    them and are renormalised with the processor's ``mean`` / ``std``
    (:class:`~rsexp.core.frames.FrameNorm`) and resized to the model's frame size.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        attn_layer: int,
        guidance_grid: int,
        segments,
        attn_to_grid: str = "area",
        mean=None,
        std=None,
    ):
        super().__init__()
        self.net = net
        cfg = base_model(net).config
        self.image_size = cfg.image_size
        tokens, self.frames_per_token = temporal_tokens(net)
        self.segments = slices_for(tokens, segments)
        side = patch_side(cfg)
        self.patch_grid = (side, side)
        self.to_grid = AttentionToGrid(self.patch_grid, (guidance_grid,) * 2, attn_to_grid)
        self.tap = AttentionTap(net, attn_layer)
        self.frame_norm = FrameNorm(mean, std)  # the processor's statistics

    def no_weight_decay(self) -> set[str]:
        names = ("cls_token", "position_embeddings", "time_embeddings")
        return {n for n, _ in self.named_parameters() if n.rsplit(".", 1)[-1] in names}

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, C, H, W] rsexp frames -> the model's normalisation and frame size."""
        x = self.frame_norm(x)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            B, T = x.shape[:2]
            x = torch.nn.functional.interpolate(
                x.flatten(0, 1), size=(self.image_size,) * 2, mode="bilinear", antialias=True
            ).unflatten(0, (B, T))
        return x

    def forward(self, x: torch.Tensor, level_grad: bool = True):
        x = self.prepare(x)
        logits = self.net(pixel_values=x).logits
        attn = self.to_grid(self.tap.attn)  # [B, T, N]
        levels = {"nar": logits}
        for lvl in ("im", "ctx"):
            seg = self.segments[lvl]
            if seg == self.segments["nar"]:  # a view of the whole clip is the clip
                levels[lvl] = logits
                continue
            with torch.set_grad_enabled(torch.is_grad_enabled() and level_grad):
                levels[lvl] = hf_view_logits(self.net, x, seg)
        return VideoOutput(logits, {k: levels[k] for k in ("im", "ctx", "nar")}, attn)


def _load_config(path: str):
    from transformers import AutoConfig

    local = Path(path).is_dir()
    try:
        return AutoConfig.from_pretrained(path, local_files_only=local), local
    except OSError as e:
        where = "folder" if local else "hub id (not a folder here)"
        raise ConfigError(f"model.hf.path: cannot read the {where} {path!r}: {e}") from None


def _processor_stats(path: str):
    f = Path(path) / "preprocessor_config.json"
    if not f.is_file():
        return None, None
    raw = json.loads(f.read_text())
    mean, std = raw.get("image_mean"), raw.get("image_std")
    return (tuple(mean), tuple(std)) if mean and std else (None, None)


def _fit_frames(net, num_frames: int, path: str) -> None:
    """The data's frame count against the model's: TimeSformer's time embeddings are
    resized (nearest, as its own embedding layer does); ViViT's and VideoMAE's position
    tables are fixed to the frames they were trained on."""
    cfg = net.config
    if cfg.num_frames == num_frames:
        return
    if cfg.model_type != "timesformer":
        raise ConfigError(
            f"model.hf.path: {path} is a {cfg.model_type} for {cfg.num_frames} frames and "
            f"data.num_frames={num_frames}; set data.num_frames={cfg.num_frames}"
        )
    emb = net.timesformer.embeddings
    te = emb.time_embeddings.data.transpose(1, 2)
    te = torch.nn.functional.interpolate(te, size=num_frames, mode="nearest").transpose(1, 2)
    emb.time_embeddings = torch.nn.Parameter(te.contiguous())
    set_num_frames(net, num_frames)


def enable_checkpointing(net) -> None:
    """Non-reentrant activation checkpointing of every layer: the tap's hook is replayed
    with its layer in backward (a reentrant replay would drop the tapped attention's
    graph). transformers 5.24 renamed the method."""
    kwargs = {"use_reentrant": False}
    if hasattr(net, "activation_checkpointing_enable"):
        net.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        net.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def tiny_example(folder: Path) -> dict:
    """A 2-layer TimeSformer for 8 frames of 16 px saved into ``folder`` (the contract
    tests' instance of ``model.name=hf``)."""
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    config = TimesformerConfig(
        image_size=16, patch_size=4, num_frames=8, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, num_labels=400,
    )  # fmt: skip
    torch.manual_seed(0)
    TimesformerForVideoClassification(config).save_pretrained(folder / "hf-timesformer")
    return {"hf.path": str(folder / "hf-timesformer")}


@register_model(label="HF", example=tiny_example)
def hf(
    cfg: ModelConfig,
    *,
    num_classes: int,
    num_frames: int,
    img_size: int,
    guidance_grid: int,
    segments,
):
    """A Hugging Face TimeSformer / ViViT / VideoMAE video classifier (``model.hf.path``);
    the other ``model.*`` shape keys do not apply (the folder's config says)."""
    from transformers import AutoModelForVideoClassification

    path = cfg.hf.path
    if not path:
        raise ConfigError("model.hf.path: set it to a save_pretrained folder (model.name=hf)")
    config, local = _load_config(path)
    if config.model_type not in FAMILIES:
        raise ConfigError(
            f"model.hf.path: {path} holds a {config.model_type!r}; rsexp supervises "
            f"{', '.join(FAMILIES)}"
        )
    # transformers' TimeSformer has no SDPA path; a frame count the others' position
    # tables do not hold is refused by _fit_frames
    impl = "eager" if config.model_type == "timesformer" else cfg.hf.attn_implementation
    kwargs = dict(num_labels=num_classes, attn_implementation=impl)
    if torch.empty(0).device.type == "meta":  # check_model: the structure, no weights
        config.update(kwargs)
        net = AutoModelForVideoClassification.from_config(config)
    else:
        from transformers.utils import logging as hf_logging

        # its load report lists the head it re-initialises, which rsexp asked for
        level, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            net = AutoModelForVideoClassification.from_pretrained(
                path, local_files_only=local, ignore_mismatched_sizes=True, **kwargs
            )
        finally:
            hf_logging.set_verbosity(level)
            if bar:
                hf_logging.enable_progress_bar()
    _fit_frames(net, num_frames, path)
    if cfg.hf.gradient_checkpointing:
        enable_checkpointing(net)
    mean, std = _processor_stats(path) if local else (None, None)
    return HFVideoModel(
        net,
        attn_layer=cfg.attn_layer,
        guidance_grid=guidance_grid,
        segments=segments,
        attn_to_grid=cfg.attn_to_grid,
        mean=mean,
        std=std,
    )
