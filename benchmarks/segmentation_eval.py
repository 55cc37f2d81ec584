"""Frame-wise evaluation throughput for action segmentation (Desktop Assembly layout).

Writes a Desktop Assembly layout whose test video is long (``--minutes`` at 25 fps,
640 x 360 MPEG-4, a sequence of actions), decodes it into the whole-video cache at
10 fps (timed), then times one evaluation pass over it: windows through the model,
window logits averaged per frame, MoF / Edit / F1@k. Prints windows/s and frames/s
(frames at 10 fps, i.e. seconds of video per second x 10).

    python benchmarks/segmentation_eval.py [--minutes 3] [key=value ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from decode import write_ucf_like  # same folder: one synthetic-video writer
from rich.console import Console


def write_video(path: Path, frames: int, seed: int) -> None:
    write_ucf_like(path, frames, seed, size=(640, 360), bit_rate=1_000_000)


def layout(root: Path, test_frames: int) -> None:
    base = root / "desktop_assembly"
    for d in ("videos", "groundTruth", "splits"):
        (base / d).mkdir(parents=True, exist_ok=True)
    actions = ["background", "take_screwdriver", "screw", "place_lid", "press_button"]
    (base / "mapping.txt").write_text("".join(f"{i} {a}\n" for i, a in enumerate(actions)))
    videos = {"train_a": 250, "train_b": 250, "test_long": test_frames}
    for i, (name, n) in enumerate(videos.items()):
        write_video(base / "videos" / f"{name}.mp4", n, i)
        seq = [actions[(f // 125) % len(actions)] for f in range(n)]  # 5 s per action
        (base / "groundTruth" / f"{name}.txt").write_text("\n".join(seq) + "\n")
    (base / "splits" / "train.split1.bundle").write_text("train_a.txt\ntrain_b.txt\n")
    (base / "splits" / "test.split1.bundle").write_text("test_long.txt\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)

    from rsexp.config import load_config
    from rsexp.experiment.build import build_run
    from rsexp.experiment.loop import Trainer
    from rsexp.experiment.reporter import Reporter
    from rsexp.experiment.rundir import RunDir
    from rsexp.track import Tracker

    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n = int(args.minutes * 60 * 25)
        t0 = time.perf_counter()
        layout(root / "data", n)
        console.print(
            f"wrote a {args.minutes:g}-minute 640x360 test video in "
            f"{time.perf_counter() - t0:.0f} s"
        )
        over = [
            f"data.root={root / 'data'}",
            f"train.runs_dir={root / 'runs'}",
            "data.val_fraction=0",
            "loss.lambda_s=0",
            "data.num_frames=8",
            "data.frame_size=112",
            "model.embed_dim=192",
            "model.depth=4",
            "model.temporal_depth=2",
            "model.num_heads=3",
            "data.batch_size=32",
            "data.num_workers=0",
            "data.decode_workers=1",
            "track.backends=[]",
            "track.overlays.num_clips=0",
            *args.overrides,
        ]
        cfg = load_config("sweeps/desktop_assembly.yaml", over)
        t0 = time.perf_counter()
        parts = build_run(cfg, Console(quiet=True))
        decode_s = time.perf_counter() - t0
        test = parts.data.test
        frames = sum(len(x) for x in test.windows.labels)
        rd = RunDir(root / "runs" / "bench")
        rd.path.mkdir(parents=True)
        tracker = Tracker(cfg.track, rd.path, cfg.train.runs_dir, Console(quiet=True))
        trainer = Trainer(parts, rd, tracker, Reporter(Console(quiet=True)))
        with torch.no_grad():
            trainer.evaluate("test")  # warm
            t0 = time.perf_counter()
            scores = trainer.evaluate("test")
            eval_s = time.perf_counter() - t0
        console.print(
            f"decode + cache at {cfg.data.segmentation_fps:g} fps: {n} video frames -> "
            f"{frames} stored, {decode_s:.1f} s (with the training clips) | "
            f"evaluation: {len(test)} windows of {cfg.data.num_frames} at stride "
            f"{cfg.data.window_stride}, {eval_s:.1f} s = {len(test) / eval_s:.1f} windows/s, "
            f"{frames / eval_s:.0f} frames/s ({frames / eval_s / cfg.data.segmentation_fps:.1f} "
            f"s of video per s) | MoF {scores['test/mof']:.1f} | TSViT "
            f"{parts.num_params / 1e6:.2f} M params, {cfg.data.frame_size} px, "
            f"{torch.get_num_threads()} threads, {parts.device}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
