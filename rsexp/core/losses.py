"""Reasoning Supervision losses (paper §2.3), pure and vectorised.

Shapes: B batch, T frames, N guidance cells (g_h * g_w), C classes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def normalise_attention(attn: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """p_{b,t} = a~_{b,t} / (1^T a~_{b,t} + eps) (paper §2.3, setup). attn: [..., N]."""
    return attn / (attn.sum(dim=-1, keepdim=True) + eps)


def spatial_alignment_loss(
    attn: torch.Tensor, mask: torch.Tensor, frame_valid: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Spatial alignment loss, paper §2.3.1.

    L = 1/|V| * sum_{(b,t) in V} KL(q_{b,t} || p_{b,t}),
    KL(q || p) = sum_n q_n log(q_n / (p_n + eps)),
    with p the CLS->patch attention normalised over the N cells, q = M / (1^T M) the
    guidance mask as a distribution, and V the frames that are marked valid *and* have
    at least one positive cell (degenerate frames are skipped, as the paper says).

    Args:
        attn: [B, T, N] non-negative CLS->patch attention (mean over heads).
        mask: [B, T, N] binary guidance mask.
        frame_valid: [B, T] bool, frames whose guidance may be used.
        eps: the paper's stability constant.

    Returns:
        Scalar loss; 0 (still attached to ``attn``'s graph) when no frame is valid.
    """
    binary = mask.dtype == torch.bool
    mask = mask.to(attn.dtype)
    count = mask.sum(dim=-1)  # [B, T]
    valid = frame_valid.bool() & (count > 0)  # V
    q = mask / count.clamp_min(1.0).unsqueeze(-1)  # [B, T, N]
    p = normalise_attention(attn, eps)
    # sum_n q_n log q_n: for a binary mask of k cells it is -log k, a [B, T] term
    # instead of another pass over N; xlogy gives 0 for q = 0 (cells outside the
    # guidance contribute nothing)
    q_log_q = -torch.log(count.clamp_min(1.0)) if binary else torch.xlogy(q, q).sum(dim=-1)
    kl = q_log_q - torch.xlogy(q, p + eps).sum(dim=-1)  # [B, T]
    num_valid = valid.sum()
    return torch.where(valid, kl, torch.zeros_like(kl)).sum() / num_valid.clamp_min(1)


def log_consensus(log_probs: torch.Tensor, mode: str = "mean", power: float = 2.0):
    """Log of the consensus of the level distributions. log_probs: [L, B, C] -> [B, C].

    ``mean`` is the paper's p_bar = 1/L sum_l p^(l). ``sharpened`` is the released code's
    form: the mean raised to ``power`` and renormalised (a DINO-style sharpened target).
    Computed in log space (logsumexp), so it never takes the log of an underflowed 0.
    """
    log_mean = torch.logsumexp(log_probs, dim=0) - math.log(log_probs.shape[0])
    if mode == "mean":
        return log_mean
    if mode == "sharpened":
        return torch.log_softmax(power * log_mean, dim=-1)
    raise ValueError(f"consensus must be 'mean' or 'sharpened', got {mode!r}")


def temporal_consistency_loss(
    logits_im: torch.Tensor,
    logits_ctx: torch.Tensor,
    logits_nar: torch.Tensor,
    tau: float = 1.0,
    consensus_mode: str = "mean",
    consensus_power: float = 2.0,
) -> torch.Tensor:
    """Three-level temporal consistency loss, paper §2.3.2.

    p^(l) = softmax(z^(l) / tau) for l in {im, ctx, nar}; p_bar = mean of the three;
    L = 1/|B| sum_b 1/3 sum_l KL(p_b^(l) || p_bar_b), the Jensen-Shannon divergence.

    Args:
        logits_im: [B, C] logits of the immediate segment.
        logits_ctx: [B, C] logits of the contextual segment.
        logits_nar: [B, C] logits of the narrative segment (the whole clip).
        tau: softmax temperature.
        consensus_mode: ``"mean"`` (paper) or ``"sharpened"`` (released code).
        consensus_power: exponent of the sharpened consensus.

    Returns:
        Scalar loss.
    """
    z = torch.stack([logits_im, logits_ctx, logits_nar])  # [3, B, C]
    z = z if z.dtype == torch.float64 else z.float()
    log_p = F.log_softmax(z / tau, dim=-1)
    log_p_bar = log_consensus(log_p, consensus_mode, consensus_power)  # [B, C]
    kl = (log_p.exp() * (log_p - log_p_bar)).sum(dim=-1)  # [3, B]: KL(p^(l) || p_bar)
    return kl.mean(dim=0).mean()
