"""Metrics as ``(sum, count)`` pairs, and the reduction that turns them into means.

A metric is a pure function of one batch returning ``(sum, count)``; the evaluation
loop adds the pairs up (:class:`SumMeter`) and divides once at the end, so a dataset
mean is exact whatever the batch sizes, and a distributed reduction is one
``all_reduce`` over the stacked pairs.
"""

from __future__ import annotations

import numpy as np
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


# --------------------------------------------------------------------------------------
# Action segmentation (Desktop Assembly, paper Table 2): the definitions of the action-
# segmentation literature (MS-TCN's evaluation): MoF, segmental Edit score, F1@{10,25,50}.


def segments(labels, background=()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of one label: ``(label, start, end)`` arrays, ``end`` exclusive,
    runs of a ``background`` label left out. labels: [F] ints."""
    y = np.asarray(labels).ravel()
    if y.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    starts = np.flatnonzero(np.r_[True, y[1:] != y[:-1]])
    ends = np.r_[starts[1:], y.size]
    lab = y[starts]
    keep = ~np.isin(lab, np.asarray(background, dtype=y.dtype))
    return lab[keep], starts[keep], ends[keep]


def edit_distance(a: np.ndarray, b: np.ndarray) -> int:
    """Levenshtein distance of two label sequences, one numpy row per element of ``a``
    (the in-row dependency is a running minimum: d[j] = j + min_k<=j (d'[k] - k))."""
    b = np.asarray(b)
    row = np.arange(b.size + 1)
    idx = np.arange(b.size + 1)
    for x in np.asarray(a):
        sub = row[:-1] + (b != x)  # substitute (or match)
        new = np.minimum(np.r_[row[0] + 1, sub], row + 1)  # or delete
        row = idx + np.minimum.accumulate(new - idx)  # or insert, left to right
    return int(row[-1])


def f1_at(pred_seg, gt_seg, threshold: float) -> float:
    """F1 (%) of predicted against true segments at IoU >= ``threshold``: each predicted
    segment, in order, is matched to the unmatched true segment of the same label with
    the highest IoU; a true segment is matched at most once."""
    return _f1(*f1_counts(pred_seg, gt_seg, threshold))


def _f1(tp: int, fp: int, fn: int) -> float:
    if tp == 0:
        return 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return 100.0 * 2 * precision * recall / (precision + recall)


def f1_counts(pred_seg, gt_seg, threshold: float) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of :func:`f1_at`'s matching."""
    pl, ps, pe = pred_seg
    gl, gs, ge = gt_seg
    if pl.size == 0 or gl.size == 0:
        return 0, int(pl.size), int(gl.size)
    inter = np.minimum(pe[:, None], ge[None]) - np.maximum(ps[:, None], gs[None])
    union = np.maximum(pe[:, None], ge[None]) - np.minimum(ps[:, None], gs[None])
    iou = np.clip(inter, 0, None) / union * (pl[:, None] == gl[None])  # [P, G]
    hit = np.zeros(gl.size, dtype=bool)
    tp = 0
    for row in iou:  # greedy, in prediction order (one step per predicted segment)
        j = int(row.argmax())
        if row[j] >= threshold and not hit[j]:
            tp, hit[j] = tp + 1, True
    return tp, int(pl.size) - tp, int(gl.size) - tp


def segmentation_scores(pred, gt, background=()) -> dict[str, float]:
    """MoF, Edit and F1@{10,25,50} (0-100) of a frame-wise prediction.

    Args:
        pred: [F] predicted integer label per frame (e.g. a 30-minute video at 10 fps
            is 18,000 frames).
        gt: [F] true integer label per frame.
        background: labels whose runs are not segments (left out of Edit and F1, as
            MS-TCN's evaluation does); MoF still counts their frames.

    Returns:
        ``{"mof", "mof_fg", "edit", "f1@10", "f1@25", "f1@50"}``: MoF = frame accuracy
        over every frame; ``mof_fg`` = frame accuracy over the frames whose true label
        is not background; Edit = (1 - Levenshtein(pred segments, true segments) / max
        of their counts) x 100; F1@k with IoU >= k / 100.
    """
    pred, gt = np.asarray(pred).ravel(), np.asarray(gt).ravel()
    if pred.shape != gt.shape:
        raise ValueError(f"pred has {pred.size} frames, gt {gt.size}")
    hit = pred == gt
    fg = ~np.isin(gt, np.asarray(background, dtype=gt.dtype))
    mof = 100.0 * float(hit.mean()) if hit.size else 0.0
    mof_fg = 100.0 * float(hit[fg].mean()) if fg.any() else 0.0
    p_seg, g_seg = segments(pred, background), segments(gt, background)
    longest = max(p_seg[0].size, g_seg[0].size)
    edit = 100.0 * (1 - edit_distance(p_seg[0], g_seg[0]) / longest) if longest else 100.0
    out = {"mof": mof, "mof_fg": mof_fg, "edit": edit}
    for k in (10, 25, 50):
        out[f"f1@{k}"] = f1_at(p_seg, g_seg, k / 100)
    return out


class SegmentationMeter:
    """Scores over many videos, as the action-segmentation literature reports them
    (MS-TCN's evaluation): MoF over every frame of every video (background included;
    ``mof_fg`` over the foreground frames only); Edit the mean over videos; F1@k from
    true / false positives and false negatives summed over videos, background runs not
    being segments."""

    KS = (10, 25, 50)

    def __init__(self, background=()):
        self.background = tuple(background)
        self.correct = self.frames = self.fg_correct = self.fg_frames = 0
        self.edits: list[float] = []
        self.counts = {k: np.zeros(3, dtype=np.int64) for k in self.KS}

    def add(self, pred, gt) -> None:
        pred, gt = np.asarray(pred).ravel(), np.asarray(gt).ravel()
        if pred.shape != gt.shape:
            raise ValueError(f"pred has {pred.size} frames, gt {gt.size}")
        hit = pred == gt
        fg = ~np.isin(gt, np.asarray(self.background, dtype=gt.dtype))
        self.correct += int(hit.sum())
        self.frames += int(hit.size)
        self.fg_correct += int(hit[fg].sum())
        self.fg_frames += int(fg.sum())
        p_seg, g_seg = segments(pred, self.background), segments(gt, self.background)
        longest = max(p_seg[0].size, g_seg[0].size)
        dist = edit_distance(p_seg[0], g_seg[0])
        self.edits.append(100.0 * (1 - dist / longest) if longest else 100.0)
        for k in self.KS:
            self.counts[k] += f1_counts(p_seg, g_seg, k / 100)

    def scores(self) -> dict[str, float]:
        """``{"mof", "mof_fg", "edit", "f1@10", "f1@25", "f1@50"}`` on a 0-100 scale."""
        out = {
            "mof": 100.0 * self.correct / self.frames if self.frames else 0.0,
            "mof_fg": 100.0 * self.fg_correct / self.fg_frames if self.fg_frames else 0.0,
            "edit": float(np.mean(self.edits)) if self.edits else 0.0,
        }
        out.update({f"f1@{k}": _f1(*self.counts[k].tolist()) for k in self.KS})
        return out
