"""Per-step cost of TimeSformer's segment views (paper §2.3.2: each level sees only its
segment): the forward/backward with the immediate and contextual passes vs the narrative
pass alone (what one shared pass over all frames costs). Same model, same batch.

    python benchmarks/segment_views.py [--device cuda] [--embed-dim 768 --depth 12 ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

import rsexp.core.models  # noqa: F401
from rsexp.core.registry import create_model
from rsexp.core.settings import ModelConfig


def step_time(fn, device, repeats: int) -> float:
    for _ in range(2):  # warm-up
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--embed-dim", type=int, default=192)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=3)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cfg = ModelConfig(
        name="timesformer",
        embed_dim=args.embed_dim,
        depth=args.depth,
        num_heads=args.heads,
        mlp_ratio=4.0,
        patch_size=args.patch,
    )
    model = create_model(cfg, num_classes=50, num_frames=args.frames, img_size=args.size)
    model = model.to(device).train()
    x = torch.randn(args.batch, args.frames, 3, args.size, args.size, device=device)
    amp = device.type == "cuda"

    def full():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x)
            loss = sum(v.float().logsumexp(-1).mean() for v in out.level_logits.values())
        loss.backward()

    def narrative_only():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            tokens = model.patch_embed(x.flatten(0, 1))
            tokens = (tokens + model.pos_embed[:, 1:]).reshape(*x.shape[:2], *tokens.shape[1:])
            cls, attn = model.encode(tokens, model.segments["nar"], with_attn=True)
            loss = model.head(cls).float().logsumexp(-1).mean() + attn.float().sum() * 0
        loss.backward()

    t_full = step_time(full, device, args.repeats)
    t_nar = step_time(narrative_only, device, args.repeats)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    result = {
        "device": name,
        "model": f"TimeSformer d{args.embed_dim} L{args.depth}, {args.frames}x{args.size}px, "
        f"patch {args.patch}, batch {args.batch}",
        "narrative_only_s": round(t_nar, 4),
        "segment_views_s": round(t_full, 4),
        "ratio": round(t_full / t_nar, 3),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
