#!/usr/bin/env bash
# The CUDA paths on a GPU machine, in one call (< 8 min on one H100): the card, the CUDA
# tests (bf16, no host-device sync in the step, torch.compile), bf16 training runs
# through the real experiment loop, training throughput against a bare timm ViT of the
# same size, TimeSformer's segment-view cost at ViT-B size, and `make bench` without its
# sweep section. One summary at the end; everything also under OUT_DIR.
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]      (run from the repository root)
set -uo pipefail
OUT=${1:-/tmp/rsexp-gpu}
mkdir -p "$OUT"
PY=${PY:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
$PY -m pytest -q tests/test_cuda.py 2>&1 | tail -15 | tee "$OUT/cuda_tests.txt"
$PY - <<'PY' 2>&1 | tee "$OUT/train.txt"
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
        "data_wait_frac_last_epoch": round(s.get("time/data_wait_frac", float("nan")), 3),
        "loss_spatial": round(s["loss/spatial"], 4),
    }))
PY
$PY benchmarks/throughput.py --seconds 8 | tee "$OUT/throughput.txt"
$PY benchmarks/segment_views.py --device cuda --embed-dim 768 --depth 12 --heads 12 \
  --frames 8 --size 224 --patch 16 --batch 8 --repeats 10 | tee "$OUT/segment_views.txt"
$PY benchmarks/suite.py --skip sweep --out "$OUT/results.json" > "$OUT/bench.txt" 2>&1
echo "== summary ($(cat "$OUT/card.txt"))"
tail -1 "$OUT/cuda_tests.txt"
cat "$OUT/train.txt" "$OUT/throughput.txt" "$OUT/segment_views.txt"
$PY -c "import json,sys; r=json.load(open(sys.argv[1])); [print(s, json.dumps(v)) for s,v in r.items() if not s.startswith('_')]" "$OUT/results.json"
