"""The training and evaluation steps: pure functions returning named measurements."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rsexp.core.errors import NonFiniteLossError  # noqa: F401 (raised here)
from rsexp.core.losses import spatial_alignment_loss, temporal_consistency_loss
from rsexp.core.metrics import Sums, spatial_kl_sums, topk_sums
from rsexp.core.models.output import VideoOutput
from rsexp.core.settings import LossConfig


def rs_losses(
    out: VideoOutput,
    labels: torch.Tensor,
    mask: torch.Tensor,
    frame_valid: torch.Tensor,
    w: LossConfig,
    with_spatial: bool = True,
) -> dict[str, torch.Tensor]:
    """Named loss terms; total = CE + lambda_s * L_spatial + lambda_t * L_temporal (§2.3).

    Args:
        out: model outputs (clip logits [B, C], level logits, attention [B, T, N]).
        labels: [B] class indices.
        mask: [B, T, N] guidance cells; frame_valid: [B, T].
        w: the loss settings (weights, temperature, released-code variants).
        with_spatial: False on steps where the spatial term is skipped
            (``spatial_every`` > 1, the released code's schedule).
    """
    if w.ce_on == "clip":
        ce = F.cross_entropy(out.logits.float(), labels)
    else:  # released code: the CE of the three heads, summed
        ce = torch.stack(
            [F.cross_entropy(z.float(), labels) for z in out.level_logits.values()]
        ).sum()
    if with_spatial:
        spatial = spatial_alignment_loss(out.attn.float(), mask, frame_valid, w.eps)
    else:
        spatial = out.attn.new_zeros(())
    lv = out.level_logits
    temporal = temporal_consistency_loss(
        lv["im"], lv["ctx"], lv["nar"], w.tau, w.consensus, w.consensus_power
    )
    # paper §2.3: the weighted total
    total = ce + w.lambda_s * spatial + w.lambda_t * temporal
    return {"loss": total, "loss/ce": ce, "loss/spatial": spatial, "loss/temporal": temporal}


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA; a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: dict, device: torch.device) -> dict:
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }


def train_step(
    model: nn.Module,
    batch: dict,
    optimizer: torch.optim.Optimizer,
    w: LossConfig,
    *,
    step: int,
    lr: float,
    grad_clip: float = 0.0,
    amp: bool = True,
    check_finite: bool = True,
) -> Sums:
    """One optimisation step. Returns named ``(sum, count)`` pairs, as 0-d tensors on
    the model's device (the step never waits for the device; :func:`read_sums` reads
    many steps' pairs at once): every loss term, ``grad_norm`` and ``train/top1`` (%)
    weighted by the batch size, except ``loss/spatial``, weighted by the number of
    guided frames (a batch without guidance adds nothing to its mean rather than
    pulling it towards 0).

    Raises:
        NonFiniteLossError: with ``check_finite`` (one host-device sync), before any
            parameter is touched, if a loss term is not finite. Without it the caller
            checks the returned values (:func:`first_non_finite`) when it reads them.
    """
    device = next(model.parameters()).device
    batch = to_device(batch, device)
    model.train()
    for group in optimizer.param_groups:
        group["lr"] = lr
    # the immediate / contextual views need gradients only when a loss term trains
    # them (the temporal loss, or CE on every level); otherwise they are only logged
    level_grad = w.lambda_t > 0 or w.ce_on != "clip"
    with autocast(device, amp):
        out = model(batch["video"], level_grad=level_grad)
    spatial_step = step % w.spatial_every == 0
    terms = rs_losses(
        out, batch["label"], batch["mask"], batch["frame_valid"], w, with_spatial=spatial_step
    )
    values = {k: v.detach().float() for k, v in terms.items()}
    if check_finite:
        bad = first_non_finite(read_sums([{k: (v, 1) for k, v in values.items()}]))
        if bad is not None:
            raise NonFiniteLossError(bad[1])
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    if grad_clip > 0:
        norm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    else:
        # one fused (foreach) pass over the gradients, not one norm per parameter
        norm = nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    optimizer.step()
    B = len(batch["label"])
    sums: Sums = {k: (v * B, B) for k, v in values.items()}
    if spatial_step:
        guided = (batch["frame_valid"] & batch["mask"].any(-1)).sum()
        sums["loss/spatial"] = (values["loss/spatial"] * guided, guided)
    else:
        del sums["loss/spatial"]  # not computed on this step
    sums["grad_norm"] = (norm.detach().float() * B, B)
    # training accuracy from the logits the step already has (Fig. 5's accuracy panel
    # for runs without a validation split); dropout and augmentation are on
    hits = (out.logits.detach().argmax(-1) == batch["label"]).sum()
    sums["train/top1"] = (100.0 * hits.float(), B)
    return sums


def read_sums(steps: list[Sums]) -> list[dict[str, tuple[float, float]]]:
    """The pairs of several steps as Python numbers, in one device-to-host copy."""
    flat = [x for sums in steps for pair in sums.values() for x in pair]
    tensors = [x for x in flat if torch.is_tensor(x)]
    host = (
        iter(torch.stack([t.float().reshape(()) for t in tensors]).cpu().tolist())
        if tensors
        else iter(())
    )
    values = [next(host) if torch.is_tensor(x) else float(x) for x in flat]
    out, i = [], 0
    for sums in steps:
        d = {}
        for k in sums:
            d[k] = (values[i], values[i + 1])
            i += 2
        out.append(d)
    return out


def first_non_finite(steps: list[dict[str, tuple[float, float]]]) -> tuple[int, str] | None:
    """The first step (index into ``steps``, as :func:`read_sums` gives them) whose loss
    terms are not all finite, and its terms as ``name=value``; None when all are."""
    for i, sums in enumerate(steps):
        terms = {k: s / n if n else s for k, (s, n) in sums.items() if k.startswith("loss")}
        if not all(math.isfinite(v) for v in terms.values()):
            return i, ", ".join(f"{k}={v}" for k, v in terms.items())
    return None


@torch.no_grad()
def eval_step(model: nn.Module, batch: dict, w: LossConfig, amp: bool = True) -> EvalOutput:
    """Forward only. Returns named ``(sum, count)`` pairs, so that the caller's reduction
    (over batches, or across processes with one ``all_reduce``) gives exact dataset
    means: ``top1``/``top5`` (%), ``clip_loss`` (CE per clip), ``loss_spatial``
    (attention-guidance KL per guided frame); and the outputs for rendering.
    """
    device = next(model.parameters()).device
    batch = to_device(batch, device)
    model.eval()
    with autocast(device, amp):
        out = model(batch["video"])
    labels = batch["label"]
    logits = out.logits.float()
    attn = out.attn.float()
    sums: Sums = {
        **topk_sums(logits, labels, (1, 5)),
        "clip_loss": (float(F.cross_entropy(logits, labels, reduction="sum")), len(labels)),
        "loss_spatial": spatial_kl_sums(attn, batch["mask"], batch["frame_valid"], w.eps),
    }
    return EvalOutput(sums, logits, attn)


@dataclass
class EvalOutput:
    """``sums``: ``{name: (sum, count)}``; ``logits`` [B, C]; ``attn`` [B, T, N]."""

    sums: Sums
    logits: torch.Tensor
    attn: torch.Tensor
