"""Does Reasoning Supervision help on the embedded synthetic benchmark?

Trains TSViT on ``sweeps/synthetic.yaml`` with lambda_s = lambda_t = 0 (baseline) and
with RS (the file's lambdas), over several seeds, two runs at a time with one CPU thread
each, and prints mean +- std of the final metrics on the test split (the separately
generated test clips; ``--split val`` for the validation clips).

    python benchmarks/rs_gain.py [--config sweeps/synthetic_easy.yaml] [--seeds 0 1 2]
        [--workers 2] [key=value ...]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

from rich.console import Console
from rich.progress import Progress
from rich.table import Table


def run_one(config: str, overrides: list[str], runs_dir: str) -> dict:
    from rsexp.config import load_config
    from rsexp.experiment import train

    cfg = load_config(config, [*overrides, "train.threads=1", f"train.runs_dir={runs_dir}"])
    t0 = time.perf_counter()
    result = train(cfg, console=Console(file=io.StringIO()))
    return {**result.summary, "wall_s": time.perf_counter() - t0, "run_dir": str(result.run_dir)}


def run_seeds(args, rows: dict[str, list[str]], console: Console, line) -> dict:
    """Every row (``{name: overrides}``) over ``args.seeds``, ``args.workers`` runs at a
    time in spawned processes; ``line(name, seed, summary)`` is printed as each ends.
    Returns ``{name: [summaries]}``."""
    jobs = [(name, s) for name in rows for s in args.seeds]
    results: dict[str, list[dict]] = {name: [] for name in rows}
    with (
        ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool,
        Progress(console=console) as progress,
    ):
        task = progress.add_task("training runs", total=len(jobs))
        futures = {
            pool.submit(
                run_one,
                args.config,
                [*args.overrides, *rows[name], f"train.seed={s}"],
                args.runs_dir,
            ): (name, s)
            for name, s in jobs
        }
        for fut in as_completed(futures):
            name, s = futures[fut]
            results[name].append(r := fut.result())
            progress.console.print(line(name, s, r))
            progress.advance(task)
    return results


def fmt(values: list[float], digits: int = 2) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="sweeps/synthetic.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--runs-dir", default="runs/bench")
    p.add_argument("--split", default="test", choices=["test", "val"], help="the split to report")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    split = args.split

    methods = {"TSViT": ["loss.lambda_s=0", "loss.lambda_t=0"], "TSViT + RS": []}
    console = Console()
    t0 = time.perf_counter()

    def line(m: str, s: int, r: dict) -> str:
        return (
            f"{m:<11} seed {s}: {split} top1 {r[f'{split}/top1']:.2f}  "
            f"({r['wall_s']:.0f}s, {r['run_dir']})"
        )

    results = run_seeds(args, methods, console, line)
    total = time.perf_counter() - t0

    table = Table(title=f"rsexp bench-rs: {args.config}, seeds {args.seeds}, {split} split")
    for col in ("Method", "Top-1 ↑", "Top-5 ↑", "Clip Loss ↓", "s / run"):
        table.add_column(col)
    for m, rs in results.items():
        table.add_row(
            m,
            fmt([r[f"{split}/top1"] for r in rs]),
            fmt([r[f"{split}/top5"] for r in rs]),
            fmt([r[f"{split}/clip_loss"] for r in rs], 3),
            f"{statistics.mean(r['wall_s'] for r in rs):.0f}",
        )
    console.print(table)
    gain = statistics.mean(r[f"{split}/top1"] for r in results["TSViT + RS"]) - statistics.mean(
        r[f"{split}/top1"] for r in results["TSViT"]
    )
    console.print(
        f"RS gain: {gain:+.2f} top-1 points | total {total:.0f}s on "
        f"{args.workers} workers | runs in {args.runs_dir}/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
