"""RS for any loop: the segment views of a model and the loss as one module.

:func:`temporal_views` gives the immediate / contextual logits of rsexp's models and of
Hugging Face's video classifiers (each view sees only its frames, paper §2.3.2);
:class:`ReasoningSupervision` turns logits, labels, tapped attention, guidance masks and
view logits into the named loss terms of :func:`~rsexp.core.step.rs_losses`, the same
code rsexp's own training step runs.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from rsexp.core.attn_grid import AttentionToGrid
from rsexp.core.models.output import VideoOutput
from rsexp.core.segments import slices_for
from rsexp.core.settings import LossConfig, ModelConfig, SegmentsConfig
from rsexp.core.step import rs_losses


def _own_tokens(model: nn.Module) -> int | None:
    """Temporal tokens of rsexp's own models (None for others)."""
    from rsexp.core.models.factorised import FactorisedVideoViT
    from rsexp.core.models.timesformer import TimeSformer

    if isinstance(model, FactorisedVideoViT):
        return model.num_tokens_t
    if isinstance(model, TimeSformer):
        return model.num_frames
    return None


def temporal_views(
    model: nn.Module,
    x: torch.Tensor,
    segments: SegmentsConfig | Mapping[str, slice] | None = None,
) -> dict[str, torch.Tensor]:
    """The immediate and contextual logits of clips ``x`` (paper §2.3.2).

    Args:
        model: rsexp's TSViT / ViViT / TimeSformer, or a Hugging Face TimeSformer / ViViT
            / VideoMAE video classifier.
        x: [B, T, C, H, W] the frames the model takes.
        segments: a :class:`SegmentsConfig` (default: the paper's 20 % / 60 %), or
            ``{"im": slice, "ctx": slice}`` in temporal tokens (frames, or tubelets for
            ViViT / VideoMAE).

    Returns:
        ``{"im": [B, C], "ctx": [B, C]}``; each depends only on its segment's frames.
        (rsexp's own models return these in their output already: ``out.level_logits``;
        here they run once more with the segments asked for.)
    """
    from rsexp.core import hf_video

    segments = SegmentsConfig() if segments is None else segments
    own = _own_tokens(model)
    if own is not None:
        slices = slices_for(own, segments) if isinstance(segments, SegmentsConfig) else segments
        saved = model.segments
        model.segments = {**saved, **slices}
        try:
            lv = model(x).level_logits
        finally:
            model.segments = saved
        return {"im": lv["im"], "ctx": lv["ctx"]}
    if hf_video.family(model) is None:
        raise TypeError(
            f"temporal_views: {type(model).__name__} is neither one of rsexp's models nor a "
            f"Hugging Face TimeSformer / ViViT / VideoMAE classifier"
        )
    tokens, _ = hf_video.temporal_tokens(model)
    if isinstance(segments, SegmentsConfig):
        segments = slices_for(tokens, segments)
    return {lvl: hf_video.hf_view_logits(model, x, segments[lvl]) for lvl in ("im", "ctx")}


# the defaults are rsexp's own (one default per setting: LossConfig, ModelConfig)
_LOSS, _MODEL = LossConfig(), ModelConfig()


class ReasoningSupervision(nn.Module):
    """The RS objective for your own loop: CE + lambda_s * L_spatial + lambda_t *
    L_temporal (paper §2.3), as rsexp's training step computes it.

    Args:
        lambda_s: the weight of the spatial term.
        lambda_t: the weight of the temporal term.
        tau: the temporal loss's softmax temperature.
        segments: the views' segments (:meth:`views` uses them).
        guidance_grid: g, the guidance masks' g x g grid.
        eps: the paper's stability constant.
        consensus: the temporal consensus (``"mean"``: the paper; ``"sharpened"``: the
            released code).
        consensus_power: the sharpened consensus's exponent.
        attn_to_grid: how K patches map onto the N = g * g cells when K != N
            (``"area"`` pooling, or the paper's ``"pad_truncate"``).

    Example::

        rs = ReasoningSupervision(lambda_s=1.0, lambda_t=0.5, tau=1.0)
        with attention_tap(model) as tap:
            logits = model(pixel_values=video).logits
            terms = rs(logits, labels, tap.attn, masks, rs.views(model, video))
        terms["loss"].backward()
    """

    def __init__(
        self,
        lambda_s: float = _LOSS.lambda_s,
        lambda_t: float = _LOSS.lambda_t,
        tau: float = _LOSS.tau,
        segments: SegmentsConfig | None = None,
        guidance_grid: int = 4,
        *,
        eps: float = _LOSS.eps,
        consensus: str = _LOSS.consensus,
        consensus_power: float = _LOSS.consensus_power,
        attn_to_grid: str = _MODEL.attn_to_grid,
    ):
        super().__init__()
        self.config = LossConfig(
            lambda_s=lambda_s,
            lambda_t=lambda_t,
            tau=tau,
            eps=eps,
            segments=segments or _LOSS.segments,
            consensus=consensus,
            consensus_power=consensus_power,
        )
        self.guidance_grid, self.attn_to_grid = guidance_grid, attn_to_grid
        self._to_grid: dict[int, AttentionToGrid] = {}

    def to_grid(self, attn: torch.Tensor) -> torch.Tensor:
        """[B, T, K] attention over a square patch grid -> [B, T, N] over the cells."""
        K = attn.shape[-1]
        if K not in self._to_grid:
            side = round(K**0.5)
            if side * side != K:
                raise ValueError(f"attention over {K} patches: not a square patch grid")
            g = self.guidance_grid
            self._to_grid[K] = AttentionToGrid((side, side), (g, g), self.attn_to_grid)
        return self._to_grid[K].to(attn.device)(attn)

    def views(self, model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """:func:`temporal_views` with this objective's segments."""
        return temporal_views(model, x, self.config.segments)

    def forward(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        attn: torch.Tensor,
        masks: torch.Tensor,
        views: Mapping[str, torch.Tensor] | None = None,
        frame_valid: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Named loss terms.

        Args:
            logits: [B, C] clip logits (the narrative view); labels: [B].
            attn: [B, T, K] CLS->patch attention (``attention_tap(...).attn``).
            masks: [B, T, N] or [B, T, g, g] guidance cells (bool).
            views: ``{"im": [B, C], "ctx": [B, C]}`` (:meth:`views`); may be None only
                when ``lambda_t`` is 0.
            frame_valid: [B, T] frames whose guidance counts (default: those with a
                cell).

        Returns:
            ``{"loss", "loss/ce", "loss/spatial", "loss/temporal"}``, scalars.
        """
        masks = masks.flatten(2) if masks.dim() == 4 else masks
        if views is None:
            if self.config.lambda_t:
                raise ValueError(
                    "ReasoningSupervision: lambda_t > 0 needs the views' logits "
                    "(views=rs.views(model, video))"
                )
            views = {"im": logits, "ctx": logits}
        valid = masks.bool().any(-1) if frame_valid is None else frame_valid
        levels = {"im": views["im"], "ctx": views["ctx"], "nar": logits}
        return rs_losses(
            VideoOutput(logits, levels, self.to_grid(attn)), labels, masks, valid, self.config
        )
