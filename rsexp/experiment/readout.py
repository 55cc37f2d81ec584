"""The training steps' values, read from the device in batches of steps.

A train step returns its ``(sum, count)`` pairs as device tensors, so that it never
waits for the GPU; :class:`PendingSteps` keeps them and reads them every
``train.log_every`` steps (one copy), summed across processes in a distributed run,
checked for non-finite losses, and added to the epoch's meter.
"""

from __future__ import annotations

import torch

from rsexp.core.metrics import SumMeter
from rsexp.core.step import NonFiniteLossError, first_non_finite, read_sums
from rsexp.experiment import distributed


class PendingSteps:
    """Steps not yet read, as ``(batch index, global step, sums)``."""

    def __init__(self, every: int, dist: distributed.Dist, device: torch.device):
        self.every, self.dist, self.device = every, dist, device
        self.steps: list = []

    def add(self, batch: int, step: int, sums) -> bool:
        """Keep a step's values; True when it is time to :meth:`read`."""
        self.steps.append((batch, step, sums))
        return len(self.steps) >= self.every

    def read(self, meter: SumMeter, where: str, collective: bool = True) -> float | None:
        """Add the kept steps to ``meter``; the last step's loss (None if none was kept).

        ``where`` ("epoch 3, step {i}/40") names a bad step, ``{i}`` its batch number.
        ``collective=False``: this rank's values only (after Ctrl-C, when another rank
        may be gone; the logged means of those steps then count rank 0's share).

        Raises:
            NonFiniteLossError: naming the first step whose loss is not finite.
        """
        if not self.steps:
            return None
        host = read_sums([sums for _, _, sums in self.steps])
        if self.dist.enabled and collective:  # whole-batch sums, the same on every rank
            flat = [x for h in host for pair in h.values() for x in pair]
            it = iter(distributed.sum_across(flat, self.dist, self.device))
            host = [{k: (next(it), next(it)) for k in h} for h in host]
        bad = first_non_finite(host)
        if bad is not None:
            i, step = self.steps[bad[0]][:2]
            raise NonFiniteLossError(
                f"non-finite loss at {where.format(i=i + 1)} (global step {step}): {bad[1]}"
            )
        for sums in host:
            meter.add(sums)
        self.steps.clear()
        s, n = host[-1]["loss"]
        return s / n


def epoch_metrics(cfg) -> list[str]:
    """The metrics every epoch's record holds (what a sweep objective or a pruner can
    follow): the training terms, and the validation split's scores when there is one
    (frame-wise scores for action segmentation)."""
    from rsexp.data import is_segmentation

    keys = ["loss/total", "loss/ce", "loss/spatial", "loss/temporal", "grad_norm",
            "train/top1", "lr"]  # fmt: skip
    if cfg.data.val_fraction > 0:
        keys += ["val/top1", "val/top5", "val/clip_loss", "val/loss_spatial"]
        if is_segmentation(cfg.data.name):
            keys += ["val/mof", "val/mof_fg", "val/edit", "val/f1@10", "val/f1@25", "val/f1@50"]
    return keys
