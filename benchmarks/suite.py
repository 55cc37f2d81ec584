"""``make bench``: what the platform costs on top of the model, as ratios measured inside
one process run (machine noise cancels), written to ``benchmarks/results.json``.

Sections (``--only`` / ``--skip`` take comma-separated names):

- ``cli``: ``rsexp --help`` and ``rsexp config`` start (target < 1 s)
- ``losses``: the vectorised spatial / temporal losses vs a per-sample, per-frame loop
  over the same tensors (the released code's form), forward + backward (target >= 50x)
- ``rs_cost``: a train step with lambda_s, lambda_t > 0 vs the CE-only step, same model
  and batch (target <= 1.05x for TSViT and ViViT; TimeSformer with its segment views
  broken out)
- ``overhead``: an epoch through the real loop (RS losses, attention, MLflow, overlays,
  checkpoint; evaluation left out: it is model work) vs the bare model's forward /
  backward / AdamW step on the same batches held in memory (target <= 1.10x), on the
  synthetic default and on a ViT-B TimeSformer (a few steps)
- ``pipeline``: DataLoader wait as a share of the training pass on the clip cache of
  generated 320x240 UCF-like AVIs, default workers, once warm (target < 5 %)
- ``hf_tap``: Hugging Face TimeSformer / ViViT / VideoMAE (ViT-S width, 4 layers, 8
  frames of 64 px, batch 4): forward + backward with ``attention_tap`` and the spatial
  loss on its attention vs the bare model's CE step (target <= 1.05x), and with the two
  segment views as well (reported); and a timm ViT-S on every frame (TSViT's
  ``model.frame_encoder=timm:<name>``), tap + spatial loss vs its bare step
- ``sweep``: the default ``make sweep`` with the median pruner vs none (wall time, best
  value; about 13 min on 2 cores)

    python benchmarks/suite.py [--only losses,rs_cost] [--skip sweep] [--out PATH]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = str(ROOT / "sweeps" / "synthetic.yaml")
SECTIONS = ("cli", "losses", "rs_cost", "overhead", "pipeline", "hf_tap", "sweep")


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cores = len(os.sched_getaffinity(0))
    return f"{platform.machine()} CPU, {cores} cores, torch {torch.__version__}"


def timed(fn, repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``fn`` (the device synchronised around each call)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def alternate(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each of ``fns``, timed in turn (a slow moment hits all alike)."""
    for fn in fns.values():
        fn(), fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(timed(fn, 1, warmup=0))
    return {k: statistics.median(v) for k, v in times.items()}


# -- cli
def bench_cli(args) -> dict:
    out = {}
    for name, argv in (("rsexp --help", ["--help"]), ("rsexp config", ["config"])):
        cmd = [sys.executable, "-m", "rsexp.cli", *argv]
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)
            runs.append(time.perf_counter() - t0)
        out[name] = {"seconds": round(statistics.median(runs), 3), "target": "< 1 s"}
    return out


# -- losses
def loop_spatial(attn, mask, valid, eps=1e-8):
    """Per sample, per frame: the released code's form of the spatial KL."""
    total, count = attn.new_zeros(()), 0
    for b in range(attn.shape[0]):
        for t in range(attn.shape[1]):
            m = mask[b, t]
            if not valid[b, t] or m.sum() == 0:
                continue
            q = m / m.sum()
            p = attn[b, t] / (attn[b, t].sum() + eps)
            total = total + (torch.xlogy(q, q) - torch.xlogy(q, p + eps)).sum()
            count += 1
    return total / max(count, 1)


def loop_temporal(zs, tau=1.0):
    """Per sample: softmax of each level, their mean, the mean KL to it."""
    total = zs[0].new_zeros(())
    for b in range(zs[0].shape[0]):
        ps = [torch.softmax(z[b] / tau, -1) for z in zs]
        pbar = sum(ps) / 3
        total = total + sum((p * (p / pbar).log()).sum() for p in ps) / 3
    return total / zs[0].shape[0]


def bench_losses(args) -> dict:
    from rsexp.core.losses import spatial_alignment_loss, temporal_consistency_loss

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    g = torch.Generator().manual_seed(0)
    out = {}
    B, T, C = 32, 16, 50
    for N in (16, 196):
        attn = torch.rand(B, T, N, generator=g).to(dev).requires_grad_()
        mask = (torch.rand(B, T, N, generator=g) < 0.3).to(dev)
        valid = torch.ones(B, T, dtype=torch.bool, device=dev)
        fast = spatial_alignment_loss(attn, mask, valid)
        slow = loop_spatial(attn, mask.float(), valid)
        assert torch.allclose(fast, slow, rtol=1e-4), (fast, slow)  # same numbers
        t = alternate(
            {
                "vectorised": lambda a=attn, m=mask, v=valid: spatial_alignment_loss(
                    a, m, v
                ).backward(),
                "loop": lambda a=attn, m=mask, v=valid: loop_spatial(a, m.float(), v).backward(),
            },
            args.repeats,
        )
        out[f"spatial B{B} T{T} N{N}"] = _speedup(t)
    zs = [torch.randn(B, C, generator=g).to(dev).requires_grad_() for _ in range(3)]
    assert torch.allclose(temporal_consistency_loss(*zs), loop_temporal(zs), rtol=1e-4)
    t = alternate(
        {
            "vectorised": lambda: temporal_consistency_loss(*zs).backward(),
            "loop": lambda: loop_temporal(zs).backward(),
        },
        args.repeats,
    )
    out[f"temporal B{B} C{C}"] = _speedup(t)
    return out


def _speedup(t: dict) -> dict:
    return {
        "vectorised_ms": round(1e3 * t["vectorised"], 3),
        "loop_ms": round(1e3 * t["loop"], 2),
        "speedup": round(t["loop"] / t["vectorised"], 1),
        "target": ">= 50x",
    }


# -- rs_cost
def _batch(cfg, n: int):
    from rsexp.experiment.inputs import build_data

    data = build_data(cfg, Console(file=io.StringIO()))
    return next(iter(torch.utils.data.DataLoader(data.train, batch_size=n))), data


def bench_rs_cost(args) -> dict:
    from dataclasses import replace

    from rsexp.config import load_config
    from rsexp.core.step import train_step
    from rsexp.experiment.build import build_model, resolve_device

    out = {}
    for name in ("tsvit", "vivit", "timesformer"):
        cfg = load_config(SYNTHETIC, [f"model.name={name}", f"data.root={args.tmp}/data"])
        batch, data = _batch(cfg, cfg.data.batch_size)
        device = resolve_device("auto")
        model = build_model(cfg, len(data.class_names)).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=0.0)  # lr 0: the same weights
        ce_only = replace(cfg.loss, lambda_s=0.0, lambda_t=0.0)
        amp = device.type == "cuda"

        def step(w, model=model, batch=batch, opt=opt, amp=amp):
            return lambda: train_step(model, batch, opt, w, step=0, lr=0.0, amp=amp)

        t = alternate({"rs": step(cfg.loss), "ce": step(ce_only)}, args.repeats)
        row = {
            "ce_ms": round(1e3 * t["ce"], 2),
            "rs_ms": round(1e3 * t["rs"], 2),
            "ratio": round(t["rs"] / t["ce"], 3),
            "target": "<= 1.05x" if name != "timesformer" else "reported",
        }
        if name == "timesformer":  # its segment views are extra encoder passes
            row["segment_views"] = _segment_views(device)
        out[f"{name} (synthetic default, batch {cfg.data.batch_size})"] = row
    return out


def _segment_views(device) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import segment_views

    buf = io.StringIO()
    argv = ["--device", device.type, "--frames", "8", "--size", "32", "--patch", "8",
            "--embed-dim", "64", "--depth", "4", "--heads", "4", "--batch", "16"]  # fmt: skip
    stdout, sys.stdout = sys.stdout, buf
    try:
        segment_views.main(argv)
    finally:
        sys.stdout = stdout
    r = json.loads(buf.getvalue().strip().splitlines()[-1])
    return {k: r[k] for k in ("narrative_only_s", "segment_views_s", "ratio")}


# -- hf_tap
def _hf_net(kind: str, frames: int, size: int):
    import transformers as tf

    common = dict(
        image_size=size, num_frames=frames, hidden_size=384, num_hidden_layers=4,
        num_attention_heads=6, intermediate_size=1536, num_labels=50,
    )  # fmt: skip
    if kind == "timesformer":
        return tf.TimesformerForVideoClassification(tf.TimesformerConfig(patch_size=16, **common))
    if kind == "vivit":
        cfg = tf.VivitConfig(tubelet_size=[2, 16, 16], attn_implementation="sdpa", **common)
        return tf.VivitForVideoClassification(cfg)
    cfg = tf.VideoMAEConfig(patch_size=16, tubelet_size=2, attn_implementation="sdpa", **common)
    return tf.VideoMAEForVideoClassification(cfg)


def bench_hf_tap(args) -> dict:
    import rsexp
    from rsexp.adapters.hf import HFVideoModel
    from rsexp.core.settings import SegmentsConfig

    B, T, S = 4, 8, 64
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = torch.randn(B, T, 3, S, S, device=device)
    labels = torch.randint(0, 50, (B,), device=device)
    masks = torch.rand(B, T, 16, device=device) > 0.7
    spatial = rsexp.ReasoningSupervision(lambda_s=1.0, lambda_t=0.0)
    both = rsexp.ReasoningSupervision(lambda_s=1.0, lambda_t=0.5)
    out = {}
    for kind in ("timesformer", "vivit", "videomae"):
        torch.manual_seed(0)
        net = _hf_net(kind, T, S).to(device).train()
        wrapped = HFVideoModel(net, attn_layer=-1, guidance_grid=4, segments=SegmentsConfig())

        def bare(net=net):
            F.cross_entropy(net(pixel_values=x).logits, labels).backward()

        tap = rsexp.attention_tap(net)

        def tapped(net=net, tap=tap):
            logits = net(pixel_values=x).logits
            spatial(logits, labels, tap.attn, masks)["loss"].backward()

        t = alternate({"bare": bare, "tap": tapped}, args.repeats)
        tap.close()

        def views(wrapped=wrapped):
            o = wrapped(x)
            both(o.logits, labels, wrapped.tap.attn, masks, o.level_logits)["loss"].backward()

        tv = timed(views, max(3, args.repeats // 3))
        out[f"{kind} (B{B} T{T} {S}px, 4x384)"] = {
            "bare_ms": round(1e3 * t["bare"], 1),
            "tap_ms": round(1e3 * t["tap"], 1),
            "ratio": round(t["tap"] / t["bare"], 3),
            "with_views_ratio": round(tv / t["bare"], 2),
            "target": "<= 1.05x",
        }
    out[f"timm ViT-S per frame (B{B} T{T} {S}px, 4x384)"] = _timm_tap(x, labels, masks, args)
    return out


def _timm_tap(x, labels, masks, args) -> dict:
    """A timm ViT-S (4 layers) on every frame, clip logits = the frames' mean: with the
    tap and the spatial loss vs its bare CE step (TSViT's frame_encoder=timm:<name>)."""
    import timm

    import rsexp

    B, T = x.shape[:2]
    torch.manual_seed(0)
    vit = timm.create_model("vit_small_patch16_224", img_size=x.shape[-1], depth=4,
                            num_classes=50).to(x.device).train()  # fmt: skip
    frames = x.flatten(0, 1)
    spatial = rsexp.ReasoningSupervision(lambda_s=1.0, lambda_t=0.0)

    def clip_logits():
        return vit(frames).unflatten(0, (B, T)).mean(1)  # [B, C]

    def bare():
        F.cross_entropy(clip_logits(), labels).backward()

    tap = rsexp.attention_tap(vit)

    def tapped():
        logits = clip_logits()
        attn = tap.attn.reshape(B, T, -1)  # [B*T, 1, K] -> [B, T, K]
        spatial(logits, labels, attn, masks)["loss"].backward()

    t = alternate({"bare": bare, "tap": tapped}, args.repeats)
    tap.close()
    return {
        "bare_ms": round(1e3 * t["bare"], 1),
        "tap_ms": round(1e3 * t["tap"], 1),
        "ratio": round(t["tap"] / t["bare"], 3),
        "target": "<= 1.05x",
    }


# -- overhead
VIT_B = [
    "model.name=timesformer", "model.embed_dim=768", "model.depth=12", "model.num_heads=12",
    "model.mlp_ratio=4.0", "model.patch_size=16", "data.frame_size=64", "data.num_frames=4",
    "data.batch_size=4", "data.synthetic.num_train=12", "data.synthetic.num_val=4",
    "data.synthetic.num_test=4", "track.overlays.num_clips=2",
]  # fmt: skip


def bench_overhead(args) -> dict:
    out = {"synthetic default (TSViT)": _overhead(args, ["train.epochs=4"])}
    if not args.no_vitb:
        out["ViT-B TimeSformer, 4x64px, 3 steps/epoch"] = _overhead(
            args, [*VIT_B, "train.epochs=3"]
        )
    return out


def _overhead(args, over: list[str]) -> dict:
    """Bare epochs interleaved with the real loop's (each real epoch is preceded by a
    bare one on a copy of the model), so a slow moment of the machine hits both."""
    from rsexp.config import load_config
    from rsexp.experiment import train
    from rsexp.experiment.build import build_run
    from rsexp.experiment.loop import Trainer

    runs = f"{args.tmp}/overhead-{len(over)}"
    cfg = load_config(SYNTHETIC, [*over, f"data.root={args.tmp}/data", f"train.runs_dir={runs}"])
    # the bare model: same model and batches, already in memory, CE on the clip logits
    parts = build_run(cfg, Console(file=io.StringIO()))
    model, device = parts.model, parts.device
    loader = torch.utils.data.DataLoader(parts.data.train, batch_size=cfg.data.batch_size)
    batches = [{k: v.to(device) for k, v in b.items() if torch.is_tensor(v)} for b in loader]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr)
    amp = device.type == "cuda"

    def bare_epoch():
        model.train()
        for b in batches:
            with torch.autocast("cuda", torch.bfloat16, enabled=amp):
                out = model(b["video"], level_grad=False)
            loss = F.cross_entropy(out.logits.float(), b["label"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if amp:
            torch.cuda.synchronize()

    t: dict[str, list[float]] = {"bare": [], "flush": [], "train": [], "end": [], "eval": []}
    real = {n: getattr(Trainer, n) for n in ("train_epoch", "end_epoch", "evaluate")}

    def clock(key, fn, *a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            t[key].append(time.perf_counter() - t0)

    def train_epoch(self, *a, **kw):
        clock("flush", self.tracker.flush)  # the last epoch's uploads, before the bare one
        clock("bare", bare_epoch)
        return clock("train", real["train_epoch"], self, *a, **kw)

    Trainer.train_epoch = train_epoch
    Trainer.end_epoch = lambda self, *a, **kw: clock("end", real["end_epoch"], self, *a, **kw)
    Trainer.evaluate = lambda self, *a, **kw: clock("eval", real["evaluate"], self, *a, **kw)
    try:
        result = train(cfg, console=Console(file=io.StringIO()))
    finally:
        for name, fn in real.items():
            setattr(Trainer, name, fn)
    n = len(t["train"])
    evals = [sum(t["eval"][i::n]) for i in range(n)] if len(t["eval"]) > n else t["eval"]
    evals = evals[:n] + [0.0] * (n - len(evals))
    loop = [t["flush"][i] + t["train"][i] + t["end"][i] - evals[i] for i in range(n)][1:]
    bare = t["bare"][1:]
    extras = [t["flush"][i] + t["end"][i] - evals[i] for i in range(1, n)]
    med = statistics.median
    return {
        "loop_epoch_s": round(med(loop), 3),
        "bare_epoch_s": round(med(bare), 3),
        "ratio": round(med(loop) / med(bare), 3),
        "train_pass_ratio": round(med(t["train"][1:]) / med(bare), 3),
        "epoch_end_s": round(med(extras), 3),
        "data_wait_frac": round(med(h["time/data_wait_frac"] for h in result.history[1:]), 3),
        "target": "<= 1.10x",
    }


# -- pipeline
def bench_pipeline(args) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from decode import write_ucf_like

    from rsexp.config import load_config
    from rsexp.experiment import train

    base = Path(args.tmp) / "pipe" / "ucf50"
    guidance = {}
    for c, cls in enumerate(("Biking", "Diving", "Punch")):
        for g in range(1, 26):
            stem = f"v_{cls}_g{g:02d}_c01"
            path = base / "videos" / cls / f"{stem}.avi"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_ucf_like(path, frames=90, seed=100 * c + g)
            region = json.dumps({"key_regions": [[c, c]]})
            guidance[stem] = {str(k): {"text": region} for k in range(10)}
    (base / "guidance.json").write_text(json.dumps(guidance))
    cfg = load_config(
        ROOT / "sweeps" / "ucf50.yaml",
        [
            f"data.root={base.parent}", f"train.runs_dir={args.tmp}/pipe-runs",
            "model.name=tsvit", "model.embed_dim=64", "model.depth=4", "model.num_heads=4",
            "model.temporal_depth=2", "model.patch_size=0", "model.drop_path=0",
            "data.frame_size=112", "train.epochs=3", "track.backends=[]",
        ],
    )  # fmt: skip
    r = train(cfg, console=Console(file=io.StringIO()))
    warm = r.history[1:]
    return {
        "UCF-like 320x240 AVI, 8x112px clips, TSViT d64, batch 8": {
            "data_wait_frac": round(statistics.mean(h["time/data_wait_frac"] for h in warm), 4),
            "warm_wait_frac": round(
                statistics.mean(h["time/data_wait_warm_frac"] for h in warm), 4
            ),
            "clips_per_s": round(statistics.mean(h["time/clips_per_s"] for h in warm), 1),
            "workers": min(cfg.data.num_workers, len(os.sched_getaffinity(0))),
            "target": "< 5 %",
        }
    }


# -- sweep
def bench_sweep(args) -> dict:
    import optuna

    out = {}
    for pruner in ("median", "none"):
        runs = Path(args.tmp) / f"sweep-{pruner}"
        cmd = [sys.executable, "-m", "rsexp.cli", "sweep", "-c", SYNTHETIC, "--workers", "2",
               f"train.runs_dir={runs}", f"data.root={args.tmp}/data",
               f"sweep.pruner={pruner}", "track.backends=[]"]  # fmt: skip
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)
        wall = time.perf_counter() - t0
        study = optuna.load_study(
            study_name="synthetic-tsvit", storage=f"sqlite:///{runs / 'synthetic' / 'optuna.db'}"
        )
        trials = study.get_trials(deepcopy=False)
        stage = max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)
        out[f"pruner={pruner}"] = {
            "wall_s": round(wall, 1),
            "trials_stage_s": round(stage.total_seconds(), 1),
            "best_value": round(study.best_value, 2),
            "pruned": sum(t.state.name == "PRUNED" for t in trials),
            "epochs_trained": sum(len(t.intermediate_values) for t in trials),
        }
    return out


def show(console: Console, results: dict) -> None:
    for section, rows in results.items():
        if section.startswith("_"):
            continue
        table = Table(title=f"{section}  ({results['_machine']})", title_justify="left")
        cols = sorted({k for r in rows.values() for k in r if k != "segment_views"}, key=str)
        table.add_column("")
        for c in cols:
            table.add_column(c)
        for name, r in rows.items():
            table.add_row(name, *(str(r.get(c, "")) for c in cols))
        console.print(table)


def markdown(results: dict) -> str:
    """results.json as the README's table: one row per measured figure."""
    rows = ["| section | case | measured | target |", "| --- | --- | --- | --- |"]
    main_keys = ("ratio", "speedup", "seconds", "warm_wait_frac", "best_value")
    for section, cases in results.items():
        if section.startswith("_"):
            continue
        for case, r in cases.items():
            shown = ", ".join(
                f"{k} {v}" for k, v in r.items() if k not in ("target", "segment_views", "note")
            )
            if "segment_views" in r:
                shown += f"; segment views alone {r['segment_views']['ratio']}x"
            lead = next((f"**{r[k]}**" for k in main_keys if k in r), "")
            rows.append(f"| {section} | {case} | {lead} ({shown}) | {r.get('target', '')} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="", help="comma-separated sections")
    p.add_argument("--skip", default="", help="comma-separated sections")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--no-vitb", action="store_true", help="overhead: skip the ViT-B config")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    p.add_argument("--markdown", action="store_true", help="print --out as a table, run nothing")
    args = p.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.out).read_text())))
        return 0
    only = [s for s in args.only.split(",") if s] or list(SECTIONS)
    skip = {s for s in args.skip.split(",") if s}
    unknown = (set(only) | skip) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; valid: {', '.join(SECTIONS)}")
    console = Console()
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    results["_machine"] = machine()
    results["_date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    with tempfile.TemporaryDirectory() as tmp, console.status("benchmarks") as status:
        args.tmp = tmp
        for name in (s for s in SECTIONS if s in only and s not in skip):
            status.update(f"{name} ...")
            t0 = time.perf_counter()
            results[name] = globals()[f"bench_{name}"](args)
            console.print(f"{name}: {time.perf_counter() - t0:.0f} s")
            out_path.write_text(json.dumps(results, indent=1) + "\n")  # kept as it goes
    show(console, {k: v for k, v in results.items() if k in only or k.startswith("_")})
    console.print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
