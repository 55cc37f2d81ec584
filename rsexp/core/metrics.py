"""Classification metrics and running means."""

from __future__ import annotations

import torch


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, int]:
    """Number of samples whose label is in the top-k logits. logits [B, C], labels [B].

    k larger than the number of classes counts every sample as correct.
    """
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # [B, kmax]
    hit = top == labels[:, None]
    return {k: int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks}


class MeanMeter:
    """Sample-weighted means of named scalars."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def update(self, values: dict[str, float], n: int = 1) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * n
            self.count[k] = self.count.get(k, 0) + n

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.count[k] for k in self.sums}
