"""The public API (rsexp/__init__.py) and Hugging Face / timm models under RS.

Parity: ``attention_tap`` against each family's explicit attention (``output_attentions``
under eager; a timm ViT's own softmax), under SDPA too; segment views that do not move
when frames outside them change; ``model.name=hf`` logits equal to the wrapped model's;
``ReasoningSupervision`` equal to rsexp's own step; the CLI training each family with
``loss/spatial`` falling, a 2-trial sweep, and the plain-PyTorch example.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers as tf

import rsexp
from rsexp.adapters.hf import HFVideoModel
from rsexp.core.hf_video import hf_view_logits
from rsexp.core.settings import HfConfig, LossConfig, ModelConfig
from rsexp.core.step import rs_losses

ROOT = Path(__file__).resolve().parent.parent
B, T, S = 2, 8, 16


def hf_model(kind: str, impl: str = "eager", frames: int = T, labels: int = 5):
    common = dict(
        image_size=S, num_frames=frames, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, num_labels=labels,
    )  # fmt: skip
    torch.manual_seed(0)
    if kind == "timesformer":
        return tf.TimesformerForVideoClassification(tf.TimesformerConfig(patch_size=4, **common))
    if kind == "vivit":
        cfg = tf.VivitConfig(tubelet_size=[2, 4, 4], attn_implementation=impl, **common)
        return tf.VivitForVideoClassification(cfg)
    cfg = tf.VideoMAEConfig(patch_size=4, tubelet_size=2, attn_implementation=impl, **common)
    return tf.VideoMAEForVideoClassification(cfg)


FAMILIES = ["timesformer", "vivit", "videomae"]


def reference_attn(kind: str, attentions, batch: int) -> torch.Tensor:
    """The tap's documented meaning, from the full maps of ``output_attentions``."""
    a = attentions[-1]
    if kind == "timesformer":  # [B*T, H, 1+K, 1+K]: the CLS row per frame
        return a[:, :, 0, 1:].mean(1).reshape(batch, T, -1)
    row = a[:, :, 0, 1:].mean(1) if kind == "vivit" else a.mean(dim=(1, 2))  # [B, T'K]
    slots = row.reshape(batch, T // 2, -1)
    return (slots / slots.sum(-1, keepdim=True)).repeat_interleave(2, dim=1)


@pytest.mark.parametrize("kind", FAMILIES)
def test_attention_tap_equals_output_attentions(kind):
    model = hf_model(kind).eval()
    x = torch.randn(B, T, 3, S, S)
    with rsexp.attention_tap(model) as tap:
        out = model(pixel_values=x, output_attentions=True)
    ref = reference_attn(kind, out.attentions, B)
    assert tap.attn.shape == (B, T, (S // 4) ** 2)
    torch.testing.assert_close(tap.attn, ref, atol=1e-7, rtol=0)
    if kind != "timesformer":  # the same under SDPA, where output_attentions gives nothing
        fused = hf_model(kind, "sdpa").eval()
        fused.load_state_dict(model.state_dict())
        with rsexp.attention_tap(fused) as tap, torch.no_grad():
            fused(pixel_values=x)
        torch.testing.assert_close(tap.attn, ref, atol=1e-7, rtol=0)


def test_attention_tap_of_a_timm_vit_equals_its_softmax():
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8)
    vit.eval()
    x = torch.randn(3, 3, 32, 32)
    seen = []
    blk = vit.blocks[-1].attn
    blk.fused_attn = False  # its explicit softmax, as the reference
    hook = blk.attn_drop.register_forward_hook(lambda m, i, o: seen.append(o))
    with rsexp.attention_tap(vit) as tap, torch.no_grad():
        vit(x)
    hook.remove()
    ref = seen[0][:, :, 0, vit.num_prefix_tokens :].mean(1).unsqueeze(1)  # [B, 1, K]
    torch.testing.assert_close(tap.attn, ref, atol=1e-7, rtol=0)


@pytest.mark.parametrize("name", ["tsvit", "vivit", "timesformer"])
def test_attention_tap_of_rsexp_models_is_their_supervised_attention(name):
    from rsexp.core.models import FactorisedVideoViT  # noqa: F401 (registers the models)

    cfg = ModelConfig(name=name, embed_dim=16, depth=2, temporal_depth=1, num_heads=2)
    model = rsexp.create_model(cfg, num_classes=4, num_frames=T, img_size=S).eval()
    with rsexp.attention_tap(model) as tap, torch.no_grad():
        out = model(torch.randn(B, T, 3, S, S))
    assert tap.attn.shape[:2] == (B, T)
    torch.testing.assert_close(model.to_grid(tap.attn), out.attn, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", FAMILIES)
@pytest.mark.parametrize("level", ["im", "ctx"])
def test_each_view_sees_only_its_frames(kind, level):
    model = hf_model(kind).eval()
    x = torch.randn(B, T, 3, S, S)
    views = rsexp.temporal_views(model, x)
    seg = rsexp.segment_slices(T if kind == "timesformer" else T // 2)[level]
    f = 1 if kind == "timesformer" else 2  # frames per temporal token
    lo, hi = seg.start * f, seg.stop * f
    outside = x.clone()
    outside[:, :lo] += torch.randn_like(outside[:, :lo])
    outside[:, hi:] += torch.randn_like(outside[:, hi:])
    inside = x.clone()
    inside[:, lo:hi] += 1.0
    with torch.no_grad():
        again = rsexp.temporal_views(model, outside)[level]
        moved = rsexp.temporal_views(model, inside)[level]
    torch.testing.assert_close(again, views[level], atol=1e-6, rtol=0)
    assert (moved - views[level]).abs().max() > 1e-3
    assert model.config.num_frames == T  # the view's frame count is put back


def test_a_timesformer_view_keeps_its_absolute_time_positions():
    """A view of frames 2:6 equals a 4-frame model holding time embeddings 2:6."""
    model = hf_model("timesformer").eval()
    x = torch.randn(B, T, 3, S, S)
    short = hf_model("timesformer", frames=4).eval()
    sd = dict(model.state_dict())
    sd["timesformer.embeddings.time_embeddings"] = sd["timesformer.embeddings.time_embeddings"][
        :, 2:6
    ]
    short.load_state_dict(sd)
    with torch.no_grad():
        view = hf_view_logits(model, x, slice(2, 6))
        torch.testing.assert_close(view, short(pixel_values=x[:, 2:6]).logits)


def test_a_vivit_view_equals_transformers_own_key_mask():
    model = hf_model("vivit", "sdpa").eval()
    x = torch.randn(B, T, 3, S, S)
    keep = torch.zeros(T // 2, 16, dtype=torch.bool)
    keep[1:3] = True
    mask = torch.cat([torch.ones(1), keep.flatten().float()]).expand(B, -1).long()
    with torch.no_grad():
        hidden = model.vivit(pixel_values=x, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(
            hf_view_logits(model, x, slice(1, 3)), model.classifier(hidden[:, 0])
        )


@pytest.mark.parametrize("checkpointing", [False, True])
def test_the_spatial_loss_trains_the_tapped_layer(checkpointing):
    model = hf_model("vivit", "sdpa").train()
    if checkpointing:
        from rsexp.adapters.hf import enable_checkpointing

        enable_checkpointing(model)
        assert model.vivit.layers[-1].gradient_checkpointing
    x = torch.randn(B, T, 3, S, S)
    masks = torch.zeros(B, T, 16, dtype=torch.bool)
    masks[..., 5] = True
    rs = rsexp.ReasoningSupervision(lambda_s=1.0, lambda_t=0.0)
    with rsexp.attention_tap(model) as tap:
        logits = model(pixel_values=x).logits
        rs(logits, torch.zeros(B, dtype=torch.long), tap.attn, masks)["loss/spatial"].backward()
    grad = model.vivit.layers[-1].attention.k_proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    if checkpointing:  # the same gradient as without checkpointing
        plain = hf_model("vivit", "sdpa").train()
        with rsexp.attention_tap(plain) as tap:
            logits = plain(pixel_values=x).logits
            rs(logits, torch.zeros(B, dtype=torch.long), tap.attn, masks)[
                "loss/spatial"
            ].backward()
        torch.testing.assert_close(grad, plain.vivit.layers[-1].attention.k_proj.weight.grad)


def test_reasoning_supervision_is_rsexps_own_step():
    from rsexp.core.models import FactorisedVideoViT  # noqa: F401 (registers the models)

    cfg = ModelConfig(name="vivit", embed_dim=16, depth=2, temporal_depth=1, num_heads=2)
    model = rsexp.create_model(cfg, num_classes=4, num_frames=T, img_size=S)
    x, labels = torch.randn(B, T, 3, S, S), torch.tensor([1, 3])
    masks = torch.rand(B, T, 16) > 0.7
    w = LossConfig(lambda_s=0.7, lambda_t=0.3, tau=2.0)
    rs = rsexp.ReasoningSupervision(lambda_s=0.7, lambda_t=0.3, tau=2.0)
    with rsexp.attention_tap(model) as tap:
        out = model(x)
        mine = rs(out.logits, labels, tap.attn, masks, out.level_logits)
    own = rs_losses(out, labels, masks, masks.any(-1), w)
    for k in ("loss", "loss/ce", "loss/spatial", "loss/temporal"):
        torch.testing.assert_close(mine[k], own[k], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="lambda_t > 0 needs the views"):
        rs(out.logits, labels, tap.attn, masks)


def test_guidance_masks_read_the_store():
    cells = torch.rand(3, T, 4, 4) > 0.6
    store = rsexp.GuidanceStore.from_masks(["a", "b", "c"], cells.numpy(), grid=4)
    frames = [[0, 2, 4, 6]] * 2
    m = rsexp.guidance_masks(store, ["c", "a"], frames, lengths=[T, T])
    assert m.dtype == torch.bool and m.shape == (2, 4, 16)
    assert torch.equal(m[0], cells[2, ::2].flatten(1)) and torch.equal(
        m[1], cells[0, ::2].flatten(1)
    )
    assert not rsexp.guidance_masks(store, ["zz"], [0, 1], lengths=[T]).any()  # no guidance
    with pytest.raises(KeyError, match="'zz'"):
        rsexp.guidance_masks(store, ["a", "zz"], [0, 1], lengths=[T, T], strict=True)
    with pytest.raises(ValueError, match="grid 5"):
        rsexp.guidance_masks(store, ["a"], [0], grid=5, lengths=[T])


def test_public_names_resolve_and_import_rsexp_stays_light():
    for name in rsexp.__all__:
        assert getattr(rsexp, name) is not None, name
    code = "import sys, rsexp; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rsexp.nope  # noqa: B018


# ---------------------------------------------------------------------- model.name=hf
@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for kind in FAMILIES:
        hf_model(kind, "sdpa", labels=400).save_pretrained(root / kind)
        out[kind] = root / kind
    return out


def test_model_name_hf_gives_the_wrapped_models_logits(hf_folders):
    from rsexp.core.registry import create_model

    cfg = ModelConfig(name="hf", hf=HfConfig(path=str(hf_folders["timesformer"])))
    model = create_model(cfg, num_classes=6, num_frames=T, img_size=S).eval()
    assert isinstance(model, HFVideoModel) and model.net.config.num_labels == 6
    x = torch.randn(B, T, 3, S, S)
    with torch.no_grad():
        out = model(x)
        ref = model.net(pixel_values=x).logits  # no processor file: frames pass unchanged
    assert torch.equal(out.logits, ref)
    assert out.attn.shape == (B, T, 16)
    torch.testing.assert_close(out.attn.sum(-1), torch.ones(B, T))
    # a processor file: frames renormalised to its statistics and resized to its size
    import json
    import shutil

    folder = hf_folders["timesformer"].parent / "with-processor"
    shutil.copytree(hf_folders["timesformer"], folder, dirs_exist_ok=True)
    stats = {"image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3]}
    (folder / "preprocessor_config.json").write_text(json.dumps(stats))
    cfg = ModelConfig(name="hf", hf=HfConfig(path=str(folder)))
    model = create_model(cfg, num_classes=6, num_frames=T, img_size=2 * S).eval()
    big = torch.randn(B, T, 3, 2 * S, 2 * S)
    seen = model.prepare(big)
    assert seen.shape == (B, T, 3, S, S)
    mean, std = torch.tensor(stats["image_mean"]), torch.tensor(stats["image_std"])
    want = (big * 0.225 + 0.45 - mean.view(1, 1, 3, 1, 1)) / std.view(1, 1, 3, 1, 1)
    want = torch.nn.functional.interpolate(
        want.flatten(0, 1), size=(S, S), mode="bilinear", antialias=True
    ).unflatten(0, (B, T))
    torch.testing.assert_close(seen, want)
    with pytest.raises(rsexp.core.settings.ConfigError, match="data.num_frames=8"):
        create_model(
            ModelConfig(name="hf", hf=HfConfig(path=str(hf_folders["vivit"]))),
            num_classes=6, num_frames=6, img_size=S,
        )  # fmt: skip


HF_RUN = [
    "data.num_frames=8", f"data.frame_size={S}", "model.name=hf", "optim.lr=3e-3",
    "train.epochs=2", "data.synthetic.num_train=32",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("kind", FAMILIES)
def test_cli_trains_each_family_with_the_spatial_loss_falling(kind, hf_folders, tiny):
    import json

    from rsexp.cli import main

    args = [*tiny, *HF_RUN, f"model.hf.path={hf_folders[kind]}", "track.backends=[]"]
    assert main(["train", "--config", str(ROOT / "sweeps/synthetic.yaml"), *args]) == 0
    (run,) = (Path(tiny[-1].split("=", 1)[1]) / "synthetic").iterdir()
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == 2
    assert epochs[1]["loss/spatial"] < epochs[0]["loss/spatial"]


@pytest.mark.slow
def test_a_two_trial_sweep_of_a_hugging_face_model(hf_folders, tiny, tmp_path, monkeypatch):
    from rsexp.cli import main

    monkeypatch.chdir(tmp_path)
    args = [*tiny, *HF_RUN, f"model.hf.path={hf_folders['timesformer']}"]
    fast = ["sweep.epochs=1", "sweep.confirm_seeds=[0]", "sweep.ablation_seeds=[]"]
    config = str(ROOT / "sweeps/synthetic.yaml")
    assert (
        main(["sweep", "--config", config, "--trials", "2", "--workers", "2", *args, *fast]) == 0
    )
    reports = tmp_path / "runs" / "synthetic" / "sweep-synthetic-hf" / "reports"
    assert "| HF + RS |" in (reports / "comparison.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("example", ["plain_pytorch_hf", "lightning_module", "hf_trainer"])
def test_each_example_loop_lowers_the_spatial_loss(example):
    """The plain loop, the Lightning ``training_step`` and the ``Trainer.compute_loss``
    override each train a Hugging Face TimeSformer with RS's terms."""
    import importlib

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        history = importlib.import_module(example).main(["--epochs", "3", "--clips", "64"])
    finally:
        sys.path.pop(0)
    assert len(history) == 3
    assert {"loss/ce", "loss/spatial", "loss/temporal"} <= set(history[0])
    assert history[-1]["loss/spatial"] < history[0]["loss/spatial"]
    assert history[-1]["loss/ce"] < history[0]["loss/ce"]


# ---------------------------------------------------------------------- timm frame encoder
def tsvit_on_timm(frames: int = T, weights: str = "", size: int = 64):
    from rsexp.core.models import FactorisedVideoViT  # noqa: F401 (registers the models)

    cfg = ModelConfig(
        name="tsvit", embed_dim=32, temporal_depth=1, num_heads=2,
        frame_encoder="timm:vit_tiny_patch16_224", frame_encoder_weights=weights,
    )  # fmt: skip
    torch.manual_seed(0)
    return rsexp.create_model(cfg, num_classes=5, num_frames=frames, img_size=size)


def test_tsvit_on_a_timm_vit_trains_every_parameter_and_taps_its_last_layer():
    model = tsvit_on_timm()
    assert model.frame_vit.blocks[-1].attn.fused_attn  # fused attention stays on
    x = torch.randn(B, T, 3, 64, 64)
    with rsexp.attention_tap(model) as tap:
        out = model(x)
    assert tap.attn.shape == (B, T, 16) and out.attn.shape == (B, T, 16)  # 4x4 patches
    torch.testing.assert_close(model.to_grid(tap.attn), out.attn)
    masks = torch.zeros(B, T, 16, dtype=torch.bool)
    masks[..., 5] = True
    rs = rsexp.ReasoningSupervision(lambda_s=1.0, lambda_t=0.5)
    rs(out.logits, torch.tensor([0, 1]), tap.attn, masks, out.level_logits)["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_tsvit_on_a_timm_vit_reads_local_weights_and_its_views_see_their_frames(tmp_path):
    import timm

    donor = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    torch.save(donor.state_dict(), tmp_path / "vit.pth")
    model = tsvit_on_timm(weights=str(tmp_path / "vit.pth")).eval()
    torch.testing.assert_close(
        model.frame_vit.blocks[3].mlp.fc1.weight, donor.blocks[3].mlp.fc1.weight
    )
    assert model.frame_vit.pos_embed.shape[1] == 1 + 16  # resampled from 14x14 to 4x4
    x = torch.randn(1, T, 3, 64, 64)
    with torch.no_grad():
        base = model(x).level_logits
        seg = model.segments["im"]
        y = x.clone()
        y[:, seg.stop :] += torch.randn_like(y[:, seg.stop :])
        torch.testing.assert_close(model(y).level_logits["im"], base["im"])
        assert not torch.allclose(model(y).level_logits["nar"], base["nar"])
    with pytest.raises(FileNotFoundError, match="model.frame_encoder_weights"):
        tsvit_on_timm(weights=str(tmp_path / "missing.pth"))
    for bad, match in (
        ("timm:resnet18", "timm.models.resnet"),
        ("hf:vit", "expected timm:<name>"),
    ):
        with pytest.raises(rsexp.core.settings.ConfigError, match=match):
            rsexp.create_model(
                ModelConfig(name="tsvit", frame_encoder=bad), num_classes=5, num_frames=T,
                img_size=64,
            )  # fmt: skip
    with pytest.raises(rsexp.core.settings.ConfigError, match="TSViT's frame encoder"):
        rsexp.create_model(
            ModelConfig(name="vivit", frame_encoder="timm:vit_tiny_patch16_224"),
            num_classes=5, num_frames=T, img_size=64,
        )  # fmt: skip


@pytest.mark.slow
def test_the_papers_starred_row_from_a_hugging_face_folder(hf_folders, tiny, tmp_path):
    """``rsexp paper --models 'timesformer*' --checkpoint <save_pretrained folder>``: the
    K400 row runs the Hugging Face TimeSformer (model.name=hf) and fills TimeSformer*."""
    import json

    from rsexp.cli import main

    args = ["paper", "-c", str(ROOT / "sweeps/synthetic.yaml"), "--models", "timesformer*"]
    over = [*tiny, "track.backends=[local]", "train.epochs=1", f"data.frame_size={S}"]
    folder = str(hf_folders["timesformer"])
    assert main([*args, "--seeds", "1", "--checkpoint", folder, *over]) == 0
    root = tmp_path / "runs" / "synthetic" / "paper"
    table = (root / "reports" / "table1.md").read_text()
    assert "| TimeSformer* |" in table and "| TimeSformer* + RS |" in table, table
    run = root / "timesformer-k400-rs-s0"
    assert json.loads((run / "summary.json").read_text())["model"] == "hf"
    assert f"path: {folder}" in (run / "config.yaml").read_text()


# ---------------------------------------------------------------------- a model plugin
MODEL_PLUGIN = '''"""A researcher's own video model as an rsexp plugin: a timm ViT per frame, the
frames' features averaged over each view's segment, its own typed section."""
from dataclasses import dataclass

import torch
from timm.models.vision_transformer import VisionTransformer

import rsexp
from rsexp.config import ConfigError, register_section


@dataclass(frozen=True)
class FrameMeanConfig:
    width: int = 32

    def __post_init__(self):
        if self.width % 2:
            raise ConfigError("model.framemean.width: must be even (2 heads)")


register_section("model.framemean", FrameMeanConfig)


class FrameMean(torch.nn.Module):
    def __init__(self, width, num_classes, img_size, grid, segments):
        super().__init__()
        self.vit = VisionTransformer(img_size=img_size, patch_size=img_size // grid,
                                     embed_dim=width, depth=1, num_heads=2, num_classes=0)
        self.head = torch.nn.Linear(width, num_classes)
        self.tap = rsexp.attention_tap(self.vit)  # [B*T, 1, grid*grid] per forward
        self.segments = segments

    def forward(self, x, level_grad=True):
        B, T = x.shape[:2]
        feats = self.vit(x.flatten(0, 1)).unflatten(0, (B, T))  # [B, T, D]
        attn = self.tap.attn.reshape(B, T, -1)
        seg = rsexp.slices_for(T, self.segments)  # the run's segments (loss.segments)
        levels = {k: self.head(feats[:, s].mean(1)) for k, s in seg.items()}
        return rsexp.VideoOutput(levels["nar"], levels, attn)


@rsexp.register_model(label="FrameMean")
def framemean(cfg, *, num_classes, num_frames, img_size, guidance_grid, segments):
    own = cfg.sections.get("framemean", FrameMeanConfig())
    return FrameMean(own.width, num_classes, img_size, guidance_grid, segments)
'''


@pytest.mark.slow
def test_a_model_plugin_with_its_own_section_trains_and_sweeps(tiny, tmp_path):
    """``plugins: [module]``: a model registered outside rsexp, with its own typed
    section (model.<name>.*), imported in the sweep's worker processes too."""
    import json
    import os

    import yaml

    site = tmp_path / "mine"
    site.mkdir()
    (site / "rsexp_framemean.py").write_text(MODEL_PLUGIN)
    env = {**os.environ, "PYTHONPATH": str(site)}
    config = str(ROOT / "sweeps/synthetic.yaml")
    mine = [*tiny, "plugins=[rsexp_framemean]", "model.name=framemean", "track.backends=[local]"]

    def rsexp_cli(*args):
        return subprocess.run([sys.executable, "-m", "rsexp.cli", *args], cwd=tmp_path,
                              env=env, text=True, capture_output=True, timeout=600)  # fmt: skip

    bad = rsexp_cli("config", "-c", config, *mine, "model.framemean.width=7")
    assert bad.returncode == 2 and "model.framemean.width: must be even" in bad.stderr
    done = rsexp_cli("sweep", "-c", config, "--trials", "2", "--trials-only", "--workers", "1",
                     *mine, "model.framemean.width=24", "sweep.epochs=2")  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    trials = sorted((tmp_path / "runs" / "synthetic").glob("sweep-*/trial-*"))
    assert len(trials) == 2
    for trial in trials:
        summary = json.loads((trial / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["model"] == "framemean"
        cfg = yaml.safe_load((trial / "config.yaml").read_text())
        assert cfg["model"]["sections"] == {"framemean": {"width": 24}}
        lines = (trial / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == 2 and "loss/spatial" in json.loads(lines[-1])
