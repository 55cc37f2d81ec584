"""``rsexp paper``: every Table 1 row of one dataset as one command (no sweep).

For each model row, the baseline (lambda_s = lambda_t = 0) and + RS (the dataset's
settings) are trained over seeds on the whole training side (``data.val_fraction=0``)
and reported on the test split, then the dataset's Table 1 block is written: a grid of
configs -> runs -> tables (:mod:`rsexp.grid.grid`). Runs are idempotent: a finished run
is read back, an interrupted one resumed.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from rsexp.config import Config, ConfigError, with_values
from rsexp.experiment.build import preflight
from rsexp.grid.grid import GridRow, GridRun, Table, run_grid
from rsexp.grid.on_slurm import slurm_runner
from rsexp.report.labels import model_name

ROWS = ("tsvit", "vivit", "timesformer", "timesformer*")
# Jobs start slowest row first (TimeSformer runs one encoder pass per temporal view), so
# the pool ends on short jobs instead of leaving one worker alone with a long one.
SLOWEST_FIRST = ("timesformer*", "timesformer", "vivit", "tsvit")


def row_config(cfg: Config, row: str, checkpoint: str | None) -> Config:
    """The base config as one Table 1 row: its model, the paper's size for it on the
    real datasets (the synthetic default keeps its small model), its weights. The
    starred row's ``checkpoint`` is the official TimeSformer file, or a Hugging Face
    ``save_pretrained`` folder (a K400 ``TimesformerForVideoClassification``), which
    runs as ``model.name=hf``."""
    import rsexp.core.models  # noqa: F401  (registers the models)
    from rsexp.core.registry import model_spec

    if row.endswith("*") and checkpoint and Path(checkpoint).is_dir():
        return with_values(
            cfg, {"model.name": "hf", "model.hf.path": checkpoint, "model.pretrained": ""}
        )
    base = row.rstrip("*")
    spec = model_spec(base)  # the paper's size of it, or the small one on synthetic data
    size = spec.paper_size if cfg.data.name != "synthetic" else spec.small_size
    values = {"model.name": base, "model.pretrained": checkpoint if row.endswith("*") else ""}
    values.update({f"model.{k}": v for k, v in size.items()})
    return with_values(cfg, values)


def paper(
    cfg: Config,
    *,
    models: list[str] | None = None,
    seeds: int = 3,
    checkpoint: str | None = None,
    workers: int = 1,
    launcher: str = "local",
    console: Console | None = None,
) -> list[Path]:
    """Train every row and write ``runs/<experiment>/paper/reports/table1.{md,tex,csv}``;
    ``launcher="slurm"``: every run a Slurm job (:mod:`rsexp.grid.on_slurm`)."""
    from rsexp.jobs import slots, visible_gpus, worker_devices

    console = console or Console()
    rows = list(models or ROWS)
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise ConfigError(f"--models: unknown rows {unknown}; valid: {', '.join(ROWS)}")
    slurm = launcher == "slurm"  # the nodes' GPUs are Slurm's to give
    devices = [None] if slurm else worker_devices(cfg.sweep.devices, workers, visible_gpus())
    if "timesformer*" in rows and not checkpoint:
        console.print(
            "[yellow]skipping TimeSformer*[/]: it starts from Kinetics-400 weights; give "
            "a local checkpoint with --checkpoint PATH (or CHECKPOINT=... for make paper)"
        )
        rows.remove("timesformer*")
    root = Path(cfg.train.runs_dir) / cfg.experiment / "paper"
    configs = {row: row_config(cfg, row, checkpoint) for row in rows}
    for c in configs.values():  # a typo or missing weights: before any run starts
        preflight(c)
    table_rows = []
    for row in rows:
        name = model_name(row.rstrip("*")) + ("*" if row.endswith("*") else "")
        for method, lam in (("baseline", 0.0), ("rs", None)):
            runs = []
            for seed in range(seeds):
                values = {"train.seed": seed, "data.val_fraction": 0.0,
                          "track.tags": {**cfg.track.tags, "stage": "paper", "row": row},
                          **({"train.threads": 1} if workers > 1 else {})}  # fmt: skip
                if lam is not None:
                    values.update({"loss.lambda_s": lam, "loss.lambda_t": lam})
                folder = root / f"{row.replace('*', '-k400')}-{method}-s{seed}"
                runs.append(GridRun(with_values(configs[row], values), folder))
            label = name if method == "baseline" else f"{name} + RS"
            base = name if method == "rs" else None
            table_rows.append(GridRow(label, runs, base=base, lead=(cfg.data.name,)))
    runner = slurm_runner(cfg, root / "slurm", f"rsexp-paper-{cfg.data.name}") if slurm else None
    written, shown = run_grid(
        [Table("table1", table_rows)], root / "reports", workers, slots(devices), console,
        f"paper rows on {cfg.data.name}", f"rsexp paper {root}",
        first=lambda run: SLOWEST_FIRST.index(run.cfg.track.tags["row"]), runner=runner,
    )  # fmt: skip
    console.print(shown["table1"], markup=False)
    console.print(f"[green]paper rows done[/]: wrote {', '.join(map(str, written))}")
    return written
