"""How good must the guidance be? TSViT + RS on the embedded synthetic benchmark with
guidance of known quality: the oracle annotator (the generator's exact cells) at noise
0, 0.2 and 0.5 (each true cell dropped, each other cell added, with that probability
and a tenth of it), the free motion annotator, and the exact guidance at coverage 10,
30 and 60 % of the training videos (100 % = oracle at noise 0). Plus the baseline.
Several seeds, two runs at a time with one CPU thread each; mean ± std on the test split.
Runs train 12 epochs (``--epochs``; the config's 20 would take 25 minutes on 2 cores).

    python benchmarks/guidance_quality.py [--seeds 0 1 2] [--workers 2] [--epochs 12]
        [key=value ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rs_gain import fmt, run_seeds  # noqa: E402


def settings(guidance_dir: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (overrides of rsexp guidance, None for no file to make; training overrides)"""

    def oracle(noise: float) -> tuple[list[str], list[str]]:
        path = guidance_dir / f"oracle-{noise:g}.json"
        make = [
            "guidance.annotator=oracle",
            f"guidance.noise.drop={noise}",
            f"guidance.noise.add={noise / 10}",
            f"guidance.path={path}",
        ]
        return make, [f"guidance.path={path}"]

    motion = guidance_dir / "motion.json"
    out = {
        "baseline (no RS)": (None, ["loss.lambda_s=0", "loss.lambda_t=0"]),
        "oracle, noise 0": oracle(0.0),
        "oracle, noise 0.2": oracle(0.2),
        "oracle, noise 0.5": oracle(0.5),
        "motion (top-3 cells)": (
            ["guidance.annotator=motion", f"guidance.path={motion}"],
            [f"guidance.path={motion}"],
        ),
    }
    for c in (0.1, 0.3, 0.6):
        out[f"exact, coverage {c:.0%}"] = (None, [f"guidance.coverage={c}"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="sweeps/synthetic.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--runs-dir", default="runs/bench-guidance")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    args.overrides = [f"train.epochs={args.epochs}", *args.overrides]

    from rsexp.config import load_config
    from rsexp.guidance.annotate import annotate, journal_path

    console = Console()
    t0 = time.perf_counter()
    rows = settings(Path(args.runs_dir) / "guidance")
    for make, _ in rows.values():
        if make is not None:
            path = Path(make[-1].split("=", 1)[1])
            for old in (path, journal_path(path)):  # a fresh file for these settings
                old.unlink(missing_ok=True)
            annotate(load_config(args.config, [*args.overrides, *make]), console=console)

    def line(name: str, s: int, r: dict) -> str:
        return (
            f"{name:<22} seed {s}: test top1 {r['test/top1']:.2f} "
            f"(guided {r['guidance/frac_frames']:.0%} of frames, {r['wall_s']:.0f}s)"
        )

    results = run_seeds(args, {name: train for name, (_, train) in rows.items()}, console, line)
    total = time.perf_counter() - t0
    table = Table(
        title=f"rsexp bench-guidance: {args.config}, {args.epochs} epochs, seeds {args.seeds}, "
        "test split"
    )
    for col in ("Guidance", "frames guided", "Top-1 ↑", "Clip Loss ↓"):
        table.add_column(col)
    for name, rs in results.items():
        table.add_row(
            name,
            f"{statistics.mean(r['guidance/frac_frames'] for r in rs):.0%}",
            fmt([r["test/top1"] for r in rs]),
            fmt([r["test/clip_loss"] for r in rs], 3),
        )
    console.print(table)
    console.print(f"total {total:.0f}s on {args.workers} workers | runs in {args.runs_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
