"""Metrics as ``(sum, count)`` pairs, and the reduction that turns them into means.

A metric is a pure function of one batch returning ``(sum, count)``; the evaluation
loop adds the pairs up (:class:`SumMeter`) and divides once at the end, so a dataset
mean is exact whatever the batch sizes, and a distributed reduction is one
``all_reduce`` over the stacked pairs.
"""

from __future__ import annotations

import torch

from rsexp.core.losses import spatial_alignment_loss

Sums = dict[str, tuple[float, float]]  # name -> (sum, count)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, int]:
    """Number of samples whose label is in the top-k logits. logits [B, C], labels [B].

    k larger than the number of classes counts every sample as correct.
    """
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # [B, kmax]
    hit = top == labels[:, None]
    return {k: int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks}


def topk_sums(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> Sums:
    """``{"top<k>": (100 * correct, n)}``: top-k accuracy in percent once reduced."""
    hits = topk_correct(logits, labels, ks)
    return {f"top{k}": (100.0 * hits[k], len(labels)) for k in ks}


def spatial_kl_sums(
    attn: torch.Tensor, mask: torch.Tensor, frame_valid: torch.Tensor, eps: float = 1e-8
) -> tuple[float, float]:
    """Spatial alignment KL (paper §2.3.1) summed over the guided frames, and their
    number. attn, mask: [B, T, N]; frame_valid: [B, T]."""
    valid = frame_valid & mask.any(-1)
    n = int(valid.sum())
    return float(spatial_alignment_loss(attn, mask, valid, eps)) * n, n


class SumMeter:
    """Running ``(sum, count)`` per name; :meth:`means` divides once.

    Training steps give batch means (:meth:`update` with the batch size ``n``),
    evaluation steps give sums (:meth:`add`). A name whose count is 0 (a term that never
    applied, e.g. the spatial loss with no guided frame) has no mean and is left out.
    """

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count: dict[str, float] = {}

    def add(self, pairs: Sums) -> None:
        for k, (s, n) in pairs.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(s)
            self.count[k] = self.count.get(k, 0) + n

    def update(self, values: dict[str, float], n: int = 1) -> None:
        self.add({k: (float(v) * n, n) for k, v in values.items()})

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.count[k] for k in self.sums if self.count[k]}
