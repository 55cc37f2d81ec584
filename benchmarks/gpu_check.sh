#!/usr/bin/env bash
# The CUDA paths on a GPU machine, in one call: the card, a bf16 training run through the
# real experiment loop (synthetic default, local tracking), and the per-step cost of
# TimeSformer's segment views at ViT-B size. Needs torch + timm (no trackers, no decord).
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]
set -euo pipefail
OUT=${1:-/tmp/rsexp-gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
python3 - <<'PY' 2>&1 | tee "$OUT/train.txt"
import io, json, time
import torch
from rich.console import Console
from rsexp.config import load_config
from rsexp.experiment import train

for name, extra in [("tsvit", []), ("timesformer", ["model.patch_size=8"])]:
    cfg = load_config("sweeps/synthetic.yaml", [
        "train.device=cuda", "train.epochs=6", "track.backends=[]",
        "track.overlays.num_clips=2", "train.runs_dir=/tmp/rsexp-gpu-runs",
        f"model.name={name}", *extra,
    ])
    t0 = time.perf_counter()
    r = train(cfg, console=Console(file=io.StringIO()))
    s = r.summary
    print(json.dumps({
        "run": f"{name} synthetic, bf16 autocast, 6 epochs",
        "wall_s": round(time.perf_counter() - t0, 1),
        "val_top1": round(s["val/top1"], 2),
        "clips_per_s_last_epoch": round(s["time/clips_per_s"], 1),
        "loss_spatial": round(s["loss/spatial"], 4),
        "bf16": torch.cuda.is_bf16_supported(),
    }))
PY
python3 benchmarks/segment_views.py --device cuda --embed-dim 768 --depth 12 --heads 12 \
  --frames 8 --size 224 --patch 16 --batch 8 --repeats 10 | tee "$OUT/segment_views.txt"
