"""The CUDA paths (#14): bf16 autocast, no host-device sync inside the train step,
torch.compile on the card. Run by ``benchmarks/gpu_check.sh`` on a GPU machine; skipped
elsewhere (these CPU machines have no CUDA device)."""

from __future__ import annotations

import copy

import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _model_and_batch(name: str, B: int = 4, T: int = 8, size: int = 32):
    import rsexp.core.models  # noqa: F401
    from rsexp.core.registry import create_model
    from rsexp.core.settings import ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(name=name, embed_dim=64, depth=2, temporal_depth=1, num_heads=4)
    model = create_model(cfg, num_classes=5, num_frames=T, img_size=size).cuda()
    mask = torch.zeros(B, T, 16, dtype=torch.bool)
    mask[:, :, 5] = True
    batch = {  # pinned, as the loop's DataLoader gives them on CUDA
        "video": torch.randn(B, T, 3, size, size).pin_memory(),
        "label": (torch.arange(B) % 5).pin_memory(),
        "mask": mask.pin_memory(),
        "frame_valid": torch.ones(B, T, dtype=torch.bool).pin_memory(),
    }
    return model, batch


@pytest.mark.parametrize("clip", [0.0, 1.0], ids=["norm", "clip"])
@pytest.mark.parametrize("name", ["tsvit", "vivit", "timesformer"])
def test_train_step_never_waits_for_the_device(name, clip):
    """With the values read later (check_finite=False, as the loop does on CUDA), a
    bf16 step makes no host-device synchronisation: CUDA's sync debug mode raises on
    one (an .item(), a float(), a data-dependent shape)."""
    from rsexp.config import load_config
    from rsexp.core.settings import LossConfig
    from rsexp.core.step import read_sums, train_step
    from rsexp.experiment.build import build_optimizer

    model, batch = _model_and_batch(name)
    opt = build_optimizer(load_config(None, []), model)  # the runs' own AdamW
    w = LossConfig(lambda_s=1.0, lambda_t=0.5)
    kw = {"lr": 1e-3, "grad_clip": clip, "check_finite": False}
    train_step(model, batch, opt, w, step=0, **kw)  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        sums = train_step(model, batch, opt, w, step=1, **kw)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    (host,) = read_sums([sums])
    assert all(torch.isfinite(torch.tensor(v[0])) for v in host.values())
    assert host["loss/spatial"][1] == 4 * 8  # every frame guided


def test_bf16_autocast_and_fused_attention_off_the_supervised_layer():
    """Under bf16 autocast the model's matmuls run in bf16 while the losses are computed
    in float32; the supervised layer returns its CLS attention, the others run SDPA."""
    from rsexp.core.models import layers

    model, batch = _model_and_batch("tsvit")
    calls = {"sdpa": 0}
    real = layers.F.scaled_dot_product_attention

    def counting(*a, **kw):
        calls["sdpa"] += 1
        assert a[0].dtype == torch.bfloat16
        return real(*a, **kw)

    layers.F.scaled_dot_product_attention = counting
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(batch["video"].cuda())
    finally:
        layers.F.scaled_dot_product_attention = real
    assert calls["sdpa"] > 0
    assert out.attn.shape == (4, 8, 16) and torch.isfinite(out.attn.float()).all()


def test_compiled_model_on_the_card_matches_eager():
    from rsexp.core.settings import LossConfig
    from rsexp.core.step import read_sums, train_step

    model, batch = _model_and_batch("tsvit")
    compiled = copy.deepcopy(model)
    compiled.compile()
    w = LossConfig(lambda_s=1.0, lambda_t=0.5)
    got = {}
    for key, m in (("eager", model), ("compiled", compiled)):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        got[key] = [
            read_sums([train_step(m, batch, opt, w, step=i, lr=0.1)])[0]["loss"][0]
            for i in range(3)
        ]
    assert got["compiled"] == pytest.approx(got["eager"], rel=2e-2)  # bf16 tolerance
