"""After the trials: the best knobs and the baseline over seeds, the ablation, tables."""

from __future__ import annotations

import io
import json
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import optuna
from rich.console import Console
from rich.progress import Progress

from rsexp.config import Config, load_config
from rsexp.sweep import space as sp

ABLATION = ("ce", "spatial", "temporal", "both")  # paper components
DISPLAY = {"tsvit": "TSViT", "vivit": "ViViT", "timesformer": "TimeSformer"}
LABELS = {
    "baseline": "baseline",
    "rs": "RS (best)",
    "ce": "CE only",
    "spatial": "+ spatial",
    "temporal": "+ temporal",
    "both": "+ both",
}


def _run_one(config, overrides: list[str], run_dir: str) -> dict:
    """Train or finish one confirmation run (idempotent: a finished run is read back)."""
    from rsexp.experiment import resume, train

    run_dir = Path(run_dir)
    summary = run_dir / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("status") == "finished":
        return json.loads(summary.read_text())
    quiet = Console(file=io.StringIO())
    if (run_dir / "checkpoints" / "last.pt").is_file():
        return resume(run_dir, console=quiet).summary
    return train(load_config(config, overrides), run_dir=run_dir, console=quiet).summary


def confirm(
    cfg: Config,
    overrides: list[str],
    config,
    study: optuna.Study,
    paths,
    workers: int,
    console: Console,
) -> dict:
    from rsexp.report.tables import write_ablation, write_comparison
    from rsexp.sweep.runner import PARENT_ATTR, _tags

    try:
        best = study.best_trial
    except ValueError:
        raise RuntimeError(
            f"study {study.study_name} has no completed trial to confirm; "
            f"see {paths.root}/worker-*.log"
        ) from None
    knobs = best.user_attrs.get("knobs") or sp.knobs_from_params(best.params, cfg.sweep.space)
    parent = study.user_attrs.get(PARENT_ATTR)
    # Rows -> (knobs, seeds). The comparison uses the best knobs as found (a term the
    # sweep switched off stays off); an ablation row with a term on uses the best weight,
    # or the base config's (the paper's) when the sweep switched that term off.
    base = sp.knobs_of(cfg)
    on_s = knobs["lambda_s"] or base["lambda_s"]
    on_t = knobs["lambda_t"] or base["lambda_t"]
    conf, abl = cfg.sweep.confirm_seeds, cfg.sweep.ablation_seeds
    rows = {
        "baseline": (dict(knobs, lambda_s=0.0, lambda_t=0.0), conf),
        "rs": (knobs, conf),
        "ce": (dict(knobs, lambda_s=0.0, lambda_t=0.0), abl),
        "spatial": (dict(knobs, lambda_s=on_s, lambda_t=0.0), abl),
        "temporal": (dict(knobs, lambda_s=0.0, lambda_t=on_t), abl),
        "both": (dict(knobs, lambda_s=on_s, lambda_t=on_t), abl),
    }
    # identical (knobs, seed) pairs are trained once and shared between rows
    runs: dict[tuple, tuple[str, int]] = {}
    for row, (k, seeds) in rows.items():
        for seed in seeds:
            runs.setdefault((tuple(sorted(k.items())), seed), (row, seed))
    jobs = {
        name: [
            *overrides,
            *sp.to_overrides(dict(key)),
            f"train.seed={seed}",
            *(["train.threads=1"] if workers > 1 else []),
            *_tags(study.study_name, "confirm", parent, component=name[0]),
        ]
        for (key, seed), name in runs.items()
    }
    results: dict[tuple[str, int], dict] = {}
    with ProcessPoolExecutor(max(1, workers)) as pool, Progress(console=console) as progress:
        task = progress.add_task("confirmation runs", total=len(jobs))
        futures = {
            pool.submit(_run_one, config, over, str(paths.confirm(*name))): name
            for name, over in jobs.items()
        }
        for fut in as_completed(futures):
            name = futures[fut]
            results[name] = fut.result()
            progress.console.print(
                f"{LABELS[name[0]]:<11} seed {name[1]}: "
                f"{cfg.sweep.objective} {results[name][cfg.sweep.objective]:.2f}"
            )
            progress.advance(task)

    def summaries(row: str) -> list[dict]:
        k, seeds = rows[row]
        return [results[runs[(tuple(sorted(k.items())), seed)]] for seed in seeds]

    name = DISPLAY.get(cfg.model.name, cfg.model.name)
    paths.reports.mkdir(parents=True, exist_ok=True)
    written = [
        *write_comparison(
            paths.reports,
            cfg.data.name,
            {name: summaries("baseline"), f"{name} + RS": summaries("rs")},
        ),
        *write_ablation(paths.reports, cfg.data.name, {LABELS[m]: summaries(m) for m in ABLATION}),
    ]
    info = {
        "study": study.study_name,
        "best_trial": best.number,
        "best_value": best.value,
        "best_knobs": knobs,
        "reports": [str(p) for p in written],
    }
    (paths.reports / "sweep.json").write_text(json.dumps(info, indent=1))
    _finish_parent(cfg, parent, written)
    console.print((paths.reports / "comparison.md").read_text())
    console.print(
        f"[green]sweep done[/]: best trial {best.number} "
        f"({cfg.sweep.objective} {best.value:.2f}) | wrote "
        + ", ".join(map(str, written))
        + f" | runs in {paths.root}"
    )
    return info


def _finish_parent(cfg: Config, parent: str | None, files: list[Path]) -> None:
    if not parent:
        return
    from rsexp.track.base import RunInfo
    from rsexp.track.mlflow_writer import MlflowWriter

    writer = MlflowWriter(
        cfg.track.mlflow.tracking_uri, cfg.track.mlflow.experiment, cfg.train.runs_dir
    )
    writer.start(RunInfo(Path("."), "", cfg.experiment, {}, parent))
    for f in files:
        writer.log_artifact(f, "reports")
    writer.finish("FINISHED")
