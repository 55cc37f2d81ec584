import pytest
import torch

import rsexp.core.models  # noqa: F401
from rsexp.core.attn_grid import AttentionToGrid, area_pool_matrix
from rsexp.core.losses import spatial_alignment_loss, temporal_consistency_loss
from rsexp.core.models import load_pretrained
from rsexp.core.registry import UnknownNameError, create_model, list_models
from rsexp.core.settings import ModelConfig

B, T, C, S = 2, 6, 5, 16  # ViViT: 3 tubelets, enough for disjoint segments
SMALL = dict(embed_dim=16, depth=2, temporal_depth=1, num_heads=2, mlp_ratio=2.0)


def small(name: str, **over) -> ModelConfig:
    """A small registered model's settings: its spec's example where it has one (a model
    read from files writes a tiny one), else rsexp's small sizes."""
    from rsexp.config import Config, with_values
    from rsexp.core.registry import model_spec

    spec = model_spec(name) if name in list_models() else None
    values = {**SMALL, **over}
    if spec is not None and spec.example is not None:
        values = {**over, **spec.example(_examples(name))}
    return with_values(Config(), {"model.name": name, **_model_keys(values)}).model


def _model_keys(values: dict) -> dict:
    return {f"model.{k}": v for k, v in values.items()}


def _examples(name: str):
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix=f"rsexp-example-{name}-"))


def make(name: str, img_size: int = S, **over):
    """A small registered model on [B, T, 3, S, S] clips of C classes."""
    return create_model(
        small(name, **over), num_classes=C, num_frames=T, img_size=img_size, guidance_grid=4
    )


def test_registry_lists_all_models_and_rejects_unknown():
    assert {"tsvit", "vivit", "timesformer"} <= set(list_models())
    with pytest.raises(UnknownNameError, match="valid models: .*tsvit"):
        make("resnet50")


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("attn_to_grid", ["area", "pad_truncate"])
def test_forward_backward_every_parameter_gets_a_gradient(name, attn_to_grid):
    torch.manual_seed(0)
    model = make(name, attn_to_grid=attn_to_grid)
    x = torch.randn(B, T, 3, S, S)
    out = model(x)
    assert out.logits.shape == (B, C)
    assert set(out.level_logits) == {"im", "ctx", "nar"}
    assert all(v.shape == (B, C) for v in out.level_logits.values())
    assert out.attn.shape == (B, T, 16)
    assert torch.all(out.attn >= 0)
    if attn_to_grid == "area" or model.to_grid.identity:
        torch.testing.assert_close(out.attn.sum(-1), torch.ones(B, T))
    mask = torch.zeros(B, T, 16, dtype=torch.bool)
    mask[:, :, 5] = True
    loss = (
        torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1]))
        + spatial_alignment_loss(out.attn, mask, torch.ones(B, T, dtype=torch.bool))
        + temporal_consistency_loss(*out.level_logits.values())
    )
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{name}: {pname} got a zero gradient"


def test_only_the_supervised_layer_uses_explicit_attention(monkeypatch):
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(
        torch.nn.functional,
        "scaled_dot_product_attention",
        lambda *a, **k: calls.append(1) or real(*a, **k),
    )
    model = make("tsvit")  # 2 spatial + 1 temporal layer, 3 temporal passes
    model(torch.randn(B, T, 3, S, S))
    assert len(calls) == 1 + 3  # spatial layer 0 fused, layer 1 explicit; temporal fused


def test_area_pooling_conserves_mass():
    w = area_pool_matrix((14, 14), (4, 4))
    assert w.shape == (16, 196)
    torch.testing.assert_close(w.sum(0), torch.ones(196))
    # a patch grid that nests in the guidance grid sums whole blocks
    w8 = area_pool_matrix((8, 8), (4, 4))
    attn = torch.zeros(64)
    attn[0] = attn[9] = 0.5  # patches (0,0) and (1,1) both lie in cell (0,0)
    assert (attn @ w8.T)[0].item() == pytest.approx(1.0)


def test_pad_truncate_is_the_papers_form():
    trunc = AttentionToGrid((8, 8), (4, 4), "pad_truncate")
    a = torch.rand(3, 64)
    torch.testing.assert_close(trunc(a), (a / a.sum(-1, keepdim=True))[:, :16])
    pad = AttentionToGrid((2, 2), (4, 4), "pad_truncate")
    out = pad(torch.rand(3, 4))
    assert out.shape == (3, 16) and torch.all(out[:, 4:] == 0)


def test_vivit_tubelet_attention_covers_every_frame():
    model = make("vivit")  # its own tubelet: 2 frames
    out = model(torch.randn(B, T, 3, S, S))
    assert out.attn.shape == (B, T, 16)
    torch.testing.assert_close(out.attn[:, 0], out.attn[:, 1])


def test_timesformer_loads_vit_layout(tmp_path):
    timm = pytest.importorskip("timm")
    vit = timm.models.VisionTransformer(
        img_size=32,
        patch_size=8,
        embed_dim=16,
        depth=2,
        num_heads=2,
        mlp_ratio=2.0,
        num_classes=10,
    )
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    model = make("timesformer", img_size=16, patch_size=8)
    report = load_pretrained(model, tmp_path / "vit.pth")
    assert report["unexpected"] == []
    assert set(report["missing"]) == {"time_embed", "head.weight", "head.bias"} | {
        f"blocks.{i}.temporal_fc.{w}" for i in range(2) for w in ("weight", "bias")
    }
    assert set(report["skipped"]) == {"head.weight", "head.bias"}  # 10 classes vs 5
    torch.testing.assert_close(model.blocks[1].attn.qkv.weight, vit.blocks[1].attn.qkv.weight)
    torch.testing.assert_close(
        model.blocks[1].temporal_attn.qkv.weight, vit.blocks[1].attn.qkv.weight
    )
    assert torch.all(model.blocks[0].temporal_fc.weight == 0)  # starts as the image model
    assert model.pos_embed.shape == (1, 1 + 4, 16)  # 4x4 -> 2x2 patch grid, resized
    with pytest.raises(FileNotFoundError):
        load_pretrained(model, tmp_path / "missing.pth")


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("split", ["ratio", "released"])
def test_each_level_sees_only_its_segment(name, split):
    """Paper §2.3.2: the immediate / contextual logits are functions of their segment's
    frames only. Perturbing a frame outside a segment leaves its logits unchanged;
    perturbing one inside changes them."""
    from rsexp.core.settings import SegmentsConfig

    torch.manual_seed(0)
    T10 = 12  # the released split: ratios of 12 frames; ViViT's 6 tubelets
    cfg = small(name)
    model = create_model(
        cfg,
        num_classes=C,
        num_frames=T10,
        img_size=S,
        guidance_grid=4,
        segments=SegmentsConfig(split=split),
    ).eval()
    tub = getattr(model, "tubelet", 1)
    x = torch.randn(1, T10, 3, S, S)
    with torch.no_grad():
        base = model(x).level_logits
    for lvl in ("im", "ctx"):
        seg = model.segments[lvl]
        inside = set(range(seg.start * tub, seg.stop * tub))
        outside = sorted(set(range(T10)) - inside)
        cases = [(sorted(inside), True)] + ([(outside, False)] if outside else [])
        for frames, should_move in cases:
            y = x.clone()
            y[:, frames] += torch.randn_like(y[:, frames])
            with torch.no_grad():
                moved = not torch.allclose(model(y).level_logits[lvl], base[lvl], atol=1e-5)
            assert moved == should_move, f"{name} {lvl}: frames {frames}"


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_carries_its_facts(name):
    """A spec's label names it in tables; its paper and small sizes are settings the
    model takes at a paper-sized and a synthetic-sized input."""
    from rsexp.config import Config, with_values
    from rsexp.core.registry import model_spec
    from rsexp.experiment.build import check_model

    spec = model_spec(name)
    assert spec.name == name and spec.label and spec.origin == "rsexp"
    example = spec.example(_examples(name)) if spec.example else {}
    for size, frame in ((spec.paper_size, 224), (spec.small_size, 32)):
        cfg = with_values(Config(), {"model.name": name, "data.frame_size": frame,
                                     **_model_keys({**size, **example})})  # fmt: skip
        check_model(cfg)
