"""Action-segmentation scores (paper Table 2) against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from rsexp.core.metrics import SegmentationMeter, edit_distance, segmentation_scores

A, B, C, BG = 1, 2, 3, 0


def seq(*runs):
    """``seq((A, 3), (B, 2))`` -> [A, A, A, B, B]."""
    return np.concatenate([np.full(n, lab) for lab, n in runs])


def test_perfect_prediction():
    gt = seq((A, 10), (B, 5), (C, 5))
    assert segmentation_scores(gt, gt) == {
        "mof": 100.0,
        "mof_fg": 100.0,
        "edit": 100.0,
        "f1@10": 100.0,
        "f1@25": 100.0,
        "f1@50": 100.0,
    }


def test_over_segmentation_lowers_edit_not_mof():
    gt = seq((A, 10), (B, 10))
    pred = seq((A, 4), (C, 1), (A, 5), (B, 10))  # one wrong frame splits A in two
    s = segmentation_scores(pred, gt)
    assert s["mof"] == pytest.approx(95.0)  # 19 of 20 frames right
    # segments A C A B vs A B: 2 insertions over max(4, 2) = 4 -> 50
    assert s["edit"] == pytest.approx(50.0)
    # pred A[0,4) IoU 0.4 with gt A -> TP at 10/25 %, A[5,10) then hits a used segment
    # -> FP; C -> FP; B -> TP. P = 2/4, R = 2/2 -> F1 = 66.67; at 50 %: A[0,4) fails
    # (0.4), A[5,10) IoU 0.5 -> TP, B TP -> same 66.67
    assert s["f1@10"] == pytest.approx(200 / 3)
    assert s["f1@50"] == pytest.approx(200 / 3)


def test_shifted_boundary_passes_f1_at_10_not_at_50():
    gt = seq((A, 10), (B, 10))
    pred = seq((A, 16), (B, 4))  # B: IoU 4 / 10 = 0.4; A: 10 / 16 = 0.625
    s = segmentation_scores(pred, gt)
    assert s["edit"] == 100.0 and s["mof"] == pytest.approx(70.0)
    assert s["f1@10"] == pytest.approx(100.0) and s["f1@25"] == pytest.approx(100.0)
    assert s["f1@50"] == pytest.approx(50.0)  # only A: P = R = 1/2


def test_background_is_left_out_of_segments_not_of_mof():
    gt = seq((BG, 5), (A, 5), (BG, 5), (B, 5))
    pred = seq((A, 10), (BG, 5), (B, 5))  # the first 5 background frames predicted as A
    s = segmentation_scores(pred, gt, background=(BG,))
    # MS-TCN's evaluation: MoF counts every frame (15 of 20 right); background runs are
    # not segments, so Edit and F1 see A, B against A, B
    assert s["mof"] == pytest.approx(75.0) and s["edit"] == 100.0
    assert s["mof_fg"] == pytest.approx(100.0)  # the 10 foreground frames are all right
    assert s["f1@50"] == pytest.approx(100.0)
    with_bg = segmentation_scores(pred, gt)
    assert with_bg["mof"] == pytest.approx(75.0) and with_bg["edit"] < 100.0


def mstcn_reference(preds, gts, background):
    """MS-TCN's eval.py, written out independently: MoF = correct / total over every
    frame of every video; Edit (mean over videos) and F1 (counts summed over videos)
    on the segments of non-background labels."""

    def segs(y):
        out, start = [], 0
        for i in range(1, len(y) + 1):
            if i == len(y) or y[i] != y[start]:
                if y[start] not in background:
                    out.append((int(y[start]), start, i))
                start = i
        return out

    def levenshtein(a, b):
        d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(len(a) + 1):
            d[i][0] = i
        for j in range(len(b) + 1):
            d[0][j] = j
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1,
                              d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))  # fmt: skip
        return d[-1][-1]

    correct = total = fg_correct = fg_total = 0
    edits, counts = [], {k: [0, 0, 0] for k in (10, 25, 50)}
    for p, g in zip(preds, gts, strict=True):
        for x, y in zip(p, g, strict=True):
            correct += x == y
            total += 1
            if y not in background:
                fg_correct += x == y
                fg_total += 1
        ps, gs = segs(list(p)), segs(list(g))
        longest = max(len(ps), len(gs))
        dist = levenshtein([s[0] for s in ps], [s[0] for s in gs])
        edits.append(100.0 * (1 - dist / longest) if longest else 100.0)
        for k in counts:
            hit = [False] * len(gs)
            tp = 0
            for lab, s0, e0 in ps:
                ious = [
                    (min(e0, e1) - max(s0, s1)) / (max(e0, e1) - min(s0, s1))
                    if lab == l1 else 0.0
                    for l1, s1, e1 in gs
                ]  # fmt: skip
                if ious:
                    j = int(np.argmax(ious))
                    if ious[j] >= k / 100 and not hit[j]:
                        tp, hit[j] = tp + 1, True
            counts[k][0] += tp
            counts[k][1] += len(ps) - tp
            counts[k][2] += len(gs) - tp
    out = {"mof": 100.0 * correct / total, "mof_fg": 100.0 * fg_correct / max(fg_total, 1),
           "edit": float(np.mean(edits))}  # fmt: skip
    for k, (tp, fp, fn) in counts.items():
        pr, rc = (tp / (tp + fp), tp / (tp + fn)) if tp else (0.0, 0.0)
        out[f"f1@{k}"] = 100.0 * 2 * pr * rc / (pr + rc) if tp else 0.0
    return out


@pytest.mark.parametrize("background", [(), (BG,), (BG, B)])
def test_meter_agrees_with_an_independent_implementation(background):
    rng = np.random.default_rng(len(background))
    preds, gts = [], []
    for _ in range(12):
        g = np.repeat(rng.integers(0, 4, 8), rng.integers(1, 6, 8))
        p = g.copy()
        flip = rng.random(g.size) < 0.25
        p[flip] = rng.integers(0, 4, int(flip.sum()))
        preds.append(p)
        gts.append(g)
    meter = SegmentationMeter(background)
    for p, g in zip(preds, gts, strict=True):
        meter.add(p, g)
    got, want = meter.scores(), mstcn_reference(preds, gts, set(background))
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k]), k


def test_single_segment_and_empty_prediction():
    gt = seq((A, 8))
    assert segmentation_scores(seq((A, 8)), gt)["f1@50"] == 100.0
    empty = segmentation_scores(seq((BG, 8)), gt, background=(BG,))
    assert empty["mof"] == 0.0 and empty["edit"] == 0.0 and empty["f1@10"] == 0.0


def test_label_permutation_scores_zero_but_keeps_structure():
    gt = seq((A, 5), (B, 5))
    pred = seq((B, 5), (A, 5))
    s = segmentation_scores(pred, gt)
    assert s["mof"] == 0.0 and s["f1@10"] == 0.0
    assert s["edit"] == 0.0  # two substitutions over two segments


def test_edit_distance_against_a_reference():
    rng = np.random.default_rng(0)

    def ref(a, b):
        d = np.arange(len(b) + 1)
        for i, x in enumerate(a, 1):
            prev, d = d, np.zeros_like(d)
            d[0] = i
            for j, y in enumerate(b, 1):
                d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (x != y))
        return int(d[-1])

    for _ in range(50):
        a, b = rng.integers(0, 4, rng.integers(0, 9)), rng.integers(0, 4, rng.integers(0, 9))
        assert edit_distance(a, b) == ref(a, b)


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="pred has 3 frames, gt 4"):
        segmentation_scores([1, 1, 1], [1, 1, 1, 1])
