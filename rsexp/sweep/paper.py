"""``rsexp paper``: every Table 1 row of one dataset as one command (no sweep).

For each model row, the baseline (lambda_s = lambda_t = 0) and + RS (the dataset's
settings) are trained over seeds on the whole training side (``data.val_fraction=0``)
and reported on the test split, then the dataset's Table 1 block is written. Runs are
idempotent: a finished run is read back, an interrupted one resumed.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from rsexp.config import ConfigError, load_config
from rsexp.experiment.build import preflight
from rsexp.experiment.interrupts import Interrupted
from rsexp.report.collect import collect
from rsexp.report.labels import model_name
from rsexp.report.results import provenance_line
from rsexp.report.tables import Line, write_table
from rsexp.sweep.common import run_jobs, visible_gpus, worker_devices

# The paper's model sizes (§3.1, Table 1), for the real datasets. TSViT: the released
# model's widths (128-d, 4 spatial + 3 temporal layers, 8 heads); ViViT: the factorised
# encoder at the paper's 4.3 M parameters; TimeSformer: ViT-B/16 (121 M with a 50-class
# head here; the paper prints "88 M"). The synthetic default keeps its small CPU-sized
# model for every row, so that `make paper` runs there in minutes; there ViViT and
# TimeSformer take one patch per guidance cell (8 px, as TSViT), not their own 4 px.
SYNTHETIC_SIZE = {"vivit": ["model.patch_size=8"], "timesformer": ["model.patch_size=8"]}
PAPER_SIZE = {
    "tsvit": ["model.embed_dim=128", "model.depth=4", "model.temporal_depth=3",
              "model.num_heads=8", "model.mlp_ratio=4.0", "model.patch_size=0"],
    "vivit": ["model.embed_dim=192", "model.depth=5", "model.temporal_depth=4",
              "model.num_heads=3", "model.mlp_ratio=4.0", "model.patch_size=16"],
    "timesformer": ["model.embed_dim=768", "model.depth=12", "model.num_heads=12",
                    "model.mlp_ratio=4.0", "model.patch_size=16"],
}  # fmt: skip
ROWS = ("tsvit", "vivit", "timesformer", "timesformer*")
# Jobs start slowest row first (TimeSformer runs one encoder pass per temporal view), so
# the pool ends on short jobs instead of leaving one worker alone with a long one.
SLOWEST_FIRST = ("timesformer*", "timesformer", "vivit", "tsvit")


def row_overrides(row: str, dataset: str, checkpoint: str | None) -> list[str]:
    base = row.rstrip("*")
    over = [f"model.name={base}", "model.pretrained="]
    if dataset != "synthetic":
        over += PAPER_SIZE[base]
    else:
        over += SYNTHETIC_SIZE.get(base, [])
    if row.endswith("*"):
        over.append(f"model.pretrained={checkpoint}")
    return over


def paper(
    config: str | None,
    overrides: list[str],
    *,
    models: list[str] | None = None,
    seeds: int = 3,
    checkpoint: str | None = None,
    workers: int = 1,
    console: Console | None = None,
) -> list[Path]:
    """Train every row and write ``runs/<experiment>/paper/reports/table1.{md,tex}``."""
    console = console or Console()
    cfg = load_config(config, overrides)
    rows = list(models or ROWS)
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise ConfigError(f"--models: unknown rows {unknown}; valid: {', '.join(ROWS)}")
    devices = worker_devices(cfg.sweep.devices, workers, visible_gpus())  # one GPU per job
    if "timesformer*" in rows and not checkpoint:
        console.print(
            "[yellow]skipping TimeSformer*[/]: it starts from Kinetics-400 weights; give "
            "a local checkpoint with --checkpoint PATH (or CHECKPOINT=... for make paper)"
        )
        rows.remove("timesformer*")
    root = Path(cfg.train.runs_dir) / cfg.experiment / "paper"
    jobs = {}
    for row in rows:
        for method, loss in (("baseline", ["loss.lambda_s=0", "loss.lambda_t=0"]), ("rs", [])):
            for seed in range(seeds):
                jobs[(row, method, seed)] = (
                    [
                        *overrides,
                        *row_overrides(row, cfg.data.name, checkpoint),
                        *loss,
                        f"train.seed={seed}",
                        "data.val_fraction=0",
                        *(["train.threads=1"] if workers > 1 else []),
                        f'track.tags={{"stage": "paper", "row": "{row}"}}',
                    ],
                    root / f"{row.replace('*', '-k400')}-{method}-s{seed}",
                )
    for row in rows:  # a typo or missing weights: before any run starts
        preflight(
            load_config(config, [*overrides, *row_overrides(row, cfg.data.name, checkpoint)])
        )
    order = sorted(jobs, key=lambda key: SLOWEST_FIRST.index(key[0]))
    results: dict[tuple, dict] = {}
    with Progress(console=console) as progress:
        task = progress.add_task(f"paper rows on {cfg.data.name}", total=len(jobs))

        def done(key: tuple, r: dict) -> None:
            results[key] = r
            progress.console.print(
                f"{key[0]:<13} {key[1]:<9} seed {key[2]}: test top1 {r['test/top1']:.2f}"
            )
            progress.advance(task)

        try:
            run_jobs(
                {k: (config, jobs[k][0], str(jobs[k][1])) for k in order}, workers, done, devices
            )
        except KeyboardInterrupt:
            console.print(
                f"[yellow]interrupted[/]: the runs in progress are checkpointed; the same "
                f"command continues them ({len(results)} of {len(jobs)} done, in {root})"
            )
            raise Interrupted("paper interrupted") from None
    # rendered from the run folders, as `rsexp tables` reads them
    records = {Path(r.ref).resolve(): r for r in collect(str(root)) if r.stage == "paper"}
    lines = []
    for row in rows:
        name = model_name(row.rstrip("*")) + ("*" if row.endswith("*") else "")
        runs = {
            m: [records[Path(jobs[(row, m, s)][1]).resolve()] for s in range(seeds)]
            for m in ("baseline", "rs")
        }
        ds = cfg.data.name
        lines += [
            Line((ds,), name, runs["baseline"]),
            Line((ds,), f"{name} + RS", runs["rs"], runs["baseline"]),
        ]
    reports = root / "reports"
    prov = provenance_line(f"rsexp paper {root}", [r for ln in lines for r in ln.runs])
    written, _, shown = write_table(reports / "table1", {cfg.data.name: lines}, ["Dataset"],
                                    "", prov, ("md", "tex", "csv"))  # fmt: skip
    console.print(shown, markup=False)
    console.print(f"[green]paper rows done[/]: wrote {', '.join(map(str, written))}")
    return written
