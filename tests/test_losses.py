import math

import pytest
import torch

from rsexp.core.losses import spatial_alignment_loss, temporal_consistency_loss
from rsexp.core.segments import segment_slices


def slow_spatial(attn, mask, valid, eps=1e-8):
    """Obviously-correct reference: loops over frames, paper §2.3.1 verbatim."""
    terms = []
    B, T, N = attn.shape
    for b in range(B):
        for t in range(T):
            m = mask[b, t].double()
            if not valid[b, t] or m.sum() == 0:
                continue
            a = attn[b, t].double()
            p = a / (a.sum() + eps)
            q = m / m.sum()
            kl = sum(
                float(q[n]) * math.log(float(q[n]) / (float(p[n]) + eps))
                for n in range(N)
                if q[n] > 0
            )
            terms.append(kl)
    return sum(terms) / len(terms) if terms else 0.0


def slow_temporal(zs, tau):
    B = zs[0].shape[0]
    total = 0.0
    for b in range(B):
        ps = [torch.softmax(z[b].double() / tau, 0) for z in zs]
        pbar = sum(ps) / 3
        total += sum(float((p * (p / pbar).log()).sum()) for p in ps) / 3
    return total / B


def test_spatial_matches_reference():
    g = torch.Generator().manual_seed(0)
    attn = torch.rand(3, 5, 16, generator=g)
    mask = torch.rand(3, 5, 16, generator=g) > 0.7
    mask[0, 1] = False  # a frame with no positive cell: skipped
    valid = torch.rand(3, 5, generator=g) > 0.3
    got = spatial_alignment_loss(attn, mask, valid)
    assert got.item() == pytest.approx(slow_spatial(attn, mask, valid), rel=1e-5)


def test_spatial_hand_computed():
    # one frame, N = 4, attention (1, 1, 2, 0) -> p = (.25, .25, .5, 0); mask on cells 0, 2
    attn = torch.tensor([[[1.0, 1.0, 2.0, 0.0]]])
    mask = torch.tensor([[[1, 0, 1, 0]]])
    valid = torch.ones(1, 1, dtype=torch.bool)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.5)
    got = spatial_alignment_loss(attn, mask, valid, eps=0.0)
    assert got.item() == pytest.approx(expected)
    # attention exactly on the guidance: zero loss
    perfect = spatial_alignment_loss(torch.tensor([[[1.0, 0, 1.0, 0]]]), mask, valid)
    assert perfect.item() == pytest.approx(0.0, abs=1e-6)


def test_spatial_masking_rules():
    attn = torch.rand(2, 3, 16)
    mask = torch.zeros(2, 3, 16, dtype=torch.bool)
    mask[0, 0, 3] = True
    valid = torch.zeros(2, 3, dtype=torch.bool)
    # marked valid but no positive cell -> skipped; positive cell but not valid -> skipped
    valid[1, 1] = True
    assert spatial_alignment_loss(attn, mask, valid).item() == 0.0
    # the one valid frame alone decides the loss, whatever the other frames hold
    valid[0, 0] = True
    one = spatial_alignment_loss(attn[:1, :1], mask[:1, :1], valid[:1, :1])
    assert spatial_alignment_loss(attn, mask, valid).item() == pytest.approx(one.item())


def test_spatial_zero_without_valid_frames_keeps_graph():
    attn = torch.rand(2, 3, 16, requires_grad=True)
    loss = spatial_alignment_loss(attn, torch.zeros(2, 3, 16), torch.zeros(2, 3, dtype=bool))
    assert loss.item() == 0.0
    loss.backward()
    assert attn.grad is not None and torch.all(attn.grad == 0)


def test_spatial_gradcheck():
    attn = (torch.rand(2, 3, 6, dtype=torch.float64) + 0.1).requires_grad_()
    mask = torch.rand(2, 3, 6) > 0.5
    valid = torch.ones(2, 3, dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda a: spatial_alignment_loss(a, mask, valid), (attn,))


def test_temporal_matches_reference():
    g = torch.Generator().manual_seed(1)
    zs = [torch.randn(4, 7, generator=g) * 3 for _ in range(3)]
    for tau in (0.5, 1.0, 4.0):
        got = temporal_consistency_loss(*zs, tau=tau)
        assert got.item() == pytest.approx(slow_temporal(zs, tau), rel=1e-5)


def test_temporal_hand_computed():
    z = torch.randn(2, 5)
    assert temporal_consistency_loss(z, z, z).item() == pytest.approx(0.0, abs=1e-7)
    # two certain, disagreeing views and one uniform over 2 classes:
    # p1 = (1, 0), p2 = (0, 1), p3 = (.5, .5) -> pbar = (.5, .5)
    big = 50.0
    z1, z2, z3 = torch.tensor([[big, -big]]), torch.tensor([[-big, big]]), torch.zeros(1, 2)
    expected = (math.log(2) + math.log(2) + 0.0) / 3
    assert temporal_consistency_loss(z1, z2, z3).item() == pytest.approx(expected, rel=1e-4)


def test_temporal_bounded_and_tau_softens():
    zs = [torch.randn(8, 10) * 5 for _ in range(3)]
    sharp = temporal_consistency_loss(*zs, tau=0.5).item()
    soft = temporal_consistency_loss(*zs, tau=5.0).item()
    assert 0 <= soft < sharp <= math.log(3) + 1e-6  # JSD of three views is at most log 3


def test_temporal_gradcheck_and_sharpened_option():
    zs = [torch.randn(2, 4, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    assert torch.autograd.gradcheck(lambda a, b, c: temporal_consistency_loss(a, b, c, 0.7), zs)
    mean = temporal_consistency_loss(*zs, consensus_mode="mean")
    sharp = temporal_consistency_loss(*zs, consensus_mode="sharpened", consensus_power=3.0)
    assert not torch.isclose(mean, sharp)
    with pytest.raises(ValueError, match="consensus"):
        temporal_consistency_loss(*zs, consensus_mode="median")


def test_segments_follow_the_paper():
    s = segment_slices(10)
    assert (s["im"], s["ctx"], s["nar"]) == (slice(0, 2), slice(2, 8), slice(0, 10))
    s = segment_slices(10, 0.3, 0.4, "end")
    assert (s["im"], s["ctx"]) == (slice(7, 10), slice(3, 7))
    tiny = segment_slices(3)
    assert all(sl.stop - sl.start >= 1 for sl in tiny.values())
    with pytest.raises(ValueError):
        segment_slices(8, 0.0, 0.6)


@pytest.mark.parametrize("T", range(3, 65))
@pytest.mark.parametrize("immediate, share", [(0.2, 1.0), (0.1, 0.6), (0.3, 1.0), (0.25, 0.8)])
def test_segments_stay_disjoint_after_rounding(T, immediate, share):
    contextual = share * (1 - 2 * immediate)  # the sweep's parametrisation
    for at in ("start", "end"):
        try:
            s = segment_slices(T, immediate, contextual, at)
        except ValueError as e:  # refused, naming both, only where a frame cannot fit
            assert "immediate segment" in str(e) and "contextual segment" in str(e)
            assert round(immediate * T) == 0 or round((1 - contextual) * T / 2) == 0
            continue
        im, ctx = set(range(T)[s["im"]]), set(range(T)[s["ctx"]])
        assert im and ctx and not im & ctx, (T, s)
        assert min(ctx) == T - 1 - max(ctx)  # centred


def test_eight_frames_keep_the_paper_segments_apart():
    # rounding each length on its own gave immediate 0:2 and contextual 1:6
    s = segment_slices(8)
    assert (s["im"], s["ctx"]) == (slice(0, 2), slice(2, 6))
    with pytest.raises(ValueError, match=r"2 temporal tokens.*frames 0:1.*frames 0:2"):
        segment_slices(2)


# --------------------------------------------------------------------------------------
# loss.preset=released against a transcription of the authors' released train.py / model.py


def _released_js(p_im, p_ctx, p_nar, temperature=0.7):
    """Transcribed from the released compute_js_divergence_loss."""
    p_bar = (p_im + p_ctx + p_nar) / 3.0
    if temperature != 1.0:
        p_bar = torch.pow(p_bar, 1.0 / temperature)
        p_bar = p_bar / (p_bar.sum(dim=-1, keepdim=True) + 1e-12)
    kls = [
        torch.nn.functional.kl_div(torch.log(p_bar + 1e-12), p, reduction="batchmean")
        for p in (p_im, p_ctx, p_nar)
    ]
    return sum(kls) / 3.0


def _released_segments(T):
    """Transcribed from the released _adaptive_temporal_segmentation:
    (immediate_start, immediate_end, context_start, context_end)."""
    if T <= 4:
        return 0, T, 0, T
    elif T <= 8:
        return T // 2, T, 0, T
    elif T <= 16:
        return 3 * T // 4, T, T // 4, 3 * T // 4
    immediate_length = max(4, T // 8)
    context_length = max(8, T // 4)
    context_start = max(0, T // 2 - context_length // 2)
    return T - immediate_length, T, context_start, min(T, context_start + context_length)


def test_released_preset_sets_the_released_settings():
    from rsexp.config import load_config

    cfg = load_config(None, ["loss.preset=released"])
    lc = cfg.loss
    assert (lc.lambda_s, lc.lambda_t, lc.tau) == (0.15, 0.25, 1.0)
    assert lc.consensus == "sharpened" and lc.consensus_power == pytest.approx(1 / 0.7)
    assert lc.ce_on == "all_levels" and lc.spatial_every == 10
    assert lc.segments.split == "released"
    # an explicit setting wins over the preset
    assert load_config(None, ["loss.preset=released", "loss.lambda_s=0.4"]).loss.lambda_s == 0.4


def test_released_temporal_loss_matches_the_transcription():
    torch.manual_seed(0)
    z = [torch.randn(6, 10, dtype=torch.float64) * 3 for _ in range(3)]
    ours = temporal_consistency_loss(*z, tau=1.0, consensus_mode="sharpened",
                                     consensus_power=1 / 0.7)  # fmt: skip
    theirs = _released_js(*(t.softmax(-1) for t in z))
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("T", [2, 4, 5, 8, 9, 12, 16, 17, 32, 64])
def test_released_segments_match_the_transcription(T):
    from rsexp.core.segments import released_slices

    s = released_slices(T)
    assert (s["im"].start, s["im"].stop, s["ctx"].start, s["ctx"].stop) == _released_segments(T)
    assert s["nar"] == slice(0, T)


def test_released_ce_is_the_sum_over_the_three_heads():
    from rsexp.core.models.output import VideoOutput
    from rsexp.core.settings import LossConfig
    from rsexp.core.step import rs_losses

    torch.manual_seed(0)
    z = {k: torch.randn(4, 5) for k in ("im", "ctx", "nar")}
    labels = torch.tensor([0, 1, 2, 3])
    out = VideoOutput(z["nar"], z, torch.full((4, 2, 16), 1 / 16))
    mask = torch.zeros(4, 2, 16, dtype=torch.bool)
    terms = rs_losses(out, labels, mask, mask.any(-1), LossConfig(ce_on="all_levels"))
    ce = torch.nn.functional.cross_entropy
    expected = ce(z["im"], labels) + ce(z["ctx"], labels) + ce(z["nar"], labels)
    torch.testing.assert_close(terms["loss/ce"], expected)
