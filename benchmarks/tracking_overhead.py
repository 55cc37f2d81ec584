"""What does tracking cost per epoch? MLflow + overlays vs. the local run folder alone.

Runs the default synthetic config for a few epochs in each setting, alternating, and
prints the steady-state epoch cycle (time between consecutive epoch ends, so it holds
everything an epoch end does: overlays, checkpoint, logging), the train + eval time
alone, and the one-off cost at the end of the run (figure, artifacts, final flush).

    python benchmarks/tracking_overhead.py [--epochs 6] [--repeats 2] [key=value ...]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table

from rsexp.config import load_config
from rsexp.experiment import train

SETTINGS = {
    "local only, no overlays": ["track.backends=[]", "track.overlays.num_clips=0"],
    "MLflow (SQLite) + overlays": ["track.backends=[mlflow]", "track.overlays.num_clips=4"],
}


def time_run(config: str, overrides: list[str], runs_dir: str) -> tuple[float, float, float]:
    """(mean epoch cycle after the first, mean train + eval, end-of-run seconds)."""
    cfg = load_config(config, [*overrides, f"train.runs_dir={runs_dir}", "train.threads=2"])
    ends: list[float] = []  # each epoch's end: checkpointed and handed to the trackers
    result = train(
        cfg,
        console=Console(file=io.StringIO()),
        on_epoch=lambda r: ends.append(time.perf_counter()),
    )
    tail = time.perf_counter() - ends[-1]
    cycle = statistics.mean(b - a for a, b in zip(ends, ends[1:], strict=False))
    return cycle, statistics.mean(h["time/epoch_s"] for h in result.history[1:]), tail


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="sweeps/synthetic.yaml")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    console = Console()
    walls: dict[str, list[float]] = {k: [] for k in SETTINGS}
    core: dict[str, list[float]] = {k: [] for k in SETTINGS}
    tails: dict[str, list[float]] = {k: [] for k in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp, console.status("timing") as status:
        for rep in range(args.repeats):
            for name, over in SETTINGS.items():
                status.update(f"repeat {rep + 1}/{args.repeats}: {name}")
                overrides = [*args.overrides, *over, f"train.epochs={args.epochs}"]
                w, c, t = time_run(args.config, overrides, tmp)
                walls[name].append(w)
                core[name].append(c)
                tails[name].append(t)
    table = Table(
        title=f"tracking overhead: {args.config}, {args.epochs} epochs x {args.repeats} repeats"
    )
    for col in ("setting", "epoch cycle s", "train + eval s", "overhead", "end of run s"):
        table.add_column(col)
    base = statistics.mean(walls["local only, no overlays"])
    for name in SETTINGS:
        w = statistics.mean(walls[name])
        table.add_row(
            name,
            f"{w:.3f}",
            f"{statistics.mean(core[name]):.3f}",
            f"{100 * (w - base) / base:+.1f} %",
            f"{statistics.mean(tails[name]):.2f}",
        )
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
