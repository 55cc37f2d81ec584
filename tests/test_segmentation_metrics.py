"""Action-segmentation scores (paper Table 2) against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from rsexp.core.metrics import edit_distance, segmentation_scores

A, B, C, BG = 1, 2, 3, 0


def seq(*runs):
    """``seq((A, 3), (B, 2))`` -> [A, A, A, B, B]."""
    return np.concatenate([np.full(n, lab) for lab, n in runs])


def test_perfect_prediction():
    gt = seq((A, 10), (B, 5), (C, 5))
    assert segmentation_scores(gt, gt) == {
        "mof": 100.0,
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


def test_background_is_left_out():
    gt = seq((BG, 5), (A, 5), (BG, 5), (B, 5))
    pred = seq((A, 10), (BG, 5), (B, 5))  # background frames predicted as A: not counted
    s = segmentation_scores(pred, gt, background=(BG,))
    assert s["mof"] == 100.0 and s["edit"] == 100.0
    assert s["f1@50"] == pytest.approx(100.0)
    with_bg = segmentation_scores(pred, gt)
    assert with_bg["mof"] == pytest.approx(75.0) and with_bg["edit"] < 100.0


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
