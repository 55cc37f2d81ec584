"""Training throughput (clips/s) of TSViT and TimeSformer with the RS losses, through
rsexp's train step, against a bare timm ViT of the same width and depth doing forward /
backward / AdamW on the same clips (each frame an image, CE on the mean frame logits).
Goal on a GPU: >= 70 % of the bare ViT's clips/s.

    python benchmarks/throughput.py [--device cuda] [--embed-dim 768 --depth 12 ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import timm
import torch
import torch.nn.functional as F

import rsexp.core.models  # noqa: F401
from rsexp.core.registry import create_model
from rsexp.core.settings import LossConfig, ModelConfig
from rsexp.core.step import read_sums, train_step


def clips_per_s(step, batch: int, device, seconds: float) -> float:
    for _ in range(3):  # warm-up (and cudnn / SDPA kernel choice)
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n * batch / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--embed-dim", type=int, default=768)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    amp = device.type == "cuda"
    B, T, S = args.batch, args.frames, args.size
    x = torch.randn(B, T, 3, S, S, device=device)
    labels = torch.arange(B, device=device) % 50
    grid = 4
    mask = torch.zeros(B, T, grid * grid, dtype=torch.bool, device=device)
    mask[:, :, 5] = True
    batch = {"video": x, "label": labels, "mask": mask,
             "frame_valid": torch.ones(B, T, dtype=torch.bool, device=device)}  # fmt: skip

    def bare_rate() -> float:
        bare = timm.models.vision_transformer.VisionTransformer(
            img_size=S, patch_size=args.patch, embed_dim=args.embed_dim, depth=args.depth,
            num_heads=args.heads, num_classes=50,
        ).to(device)  # fmt: skip
        opt = torch.optim.AdamW(bare.parameters(), lr=1e-4)

        def bare_step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = bare(x.flatten(0, 1)).reshape(B, T, -1).mean(1)
            loss = F.cross_entropy(logits.float(), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return clips_per_s(bare_step, B, device, args.seconds)

    results = {"device": torch.cuda.get_device_name(device) if amp else "CPU"}
    results["bare timm ViT"] = round(bare_rate(), 2)
    w = LossConfig(lambda_s=1.0, lambda_t=0.5)
    for name in ("tsvit", "timesformer"):
        cfg = ModelConfig(name=name, embed_dim=args.embed_dim, depth=args.depth,
                          num_heads=args.heads, mlp_ratio=4.0, patch_size=args.patch)  # fmt: skip
        model = create_model(cfg, num_classes=50, num_frames=T, img_size=S).to(device)
        mopt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        pending = []

        def step(model=model, mopt=mopt, pending=pending):
            pending.append(
                train_step(model, batch, mopt, w, step=0, lr=1e-4, amp=amp, check_finite=False)
            )
            if len(pending) >= 50:  # read as the loop does on CUDA (train.log_every)
                read_sums(pending)
                pending.clear()

        rate = clips_per_s(step, B, device, args.seconds)
        results[name] = round(rate, 2)
        results[f"{name} / bare"] = round(rate / results["bare timm ViT"], 3)
        del model, mopt
        if amp:
            torch.cuda.empty_cache()
    results["setting"] = (
        f"d{args.embed_dim} L{args.depth}, {T}x{S}px, patch {args.patch}, batch {B}, "
        f"{'bf16 autocast' if amp else 'fp32'}, RS losses on (lambda_s 1, lambda_t 0.5)"
    )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
