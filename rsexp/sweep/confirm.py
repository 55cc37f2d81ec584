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

# ablation rows (paper components): which of the two RS terms is on
ABLATION = {
    "ce": (False, False),
    "spatial": (True, False),
    "temporal": (False, True),
    "both": (True, True),
}
DISPLAY = {"tsvit": "TSViT", "vivit": "ViViT", "timesformer": "TimeSformer"}
LABELS = {"ce": "CE only", "spatial": "+ spatial", "temporal": "+ temporal", "both": "+ both"}


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
    jobs: dict[tuple[str, int], list[str]] = {}
    seeds = {
        "both": cfg.sweep.confirm_seeds,
        "ce": cfg.sweep.confirm_seeds,
        "spatial": cfg.sweep.ablation_seeds,
        "temporal": cfg.sweep.ablation_seeds,
    }
    for method, (use_s, use_t) in ABLATION.items():
        k = dict(
            knobs,
            lambda_s=knobs["lambda_s"] if use_s else 0.0,
            lambda_t=knobs["lambda_t"] if use_t else 0.0,
        )
        for seed in seeds[method]:
            jobs[(method, seed)] = [
                *overrides,
                *sp.to_overrides(k),
                f"train.seed={seed}",
                *(["train.threads=1"] if workers > 1 else []),
                *_tags(study.study_name, "confirm", parent, component=method),
            ]
    results: dict[tuple[str, int], dict] = {}
    with ProcessPoolExecutor(max(1, workers)) as pool, Progress(console=console) as progress:
        task = progress.add_task("confirmation runs", total=len(jobs))
        futures = {
            pool.submit(_run_one, config, over, str(paths.confirm(*key))): key
            for key, over in jobs.items()
        }
        for fut in as_completed(futures):
            key = futures[fut]
            results[key] = fut.result()
            progress.console.print(
                f"{LABELS[key[0]]:<11} seed {key[1]}: "
                f"{cfg.sweep.objective} {results[key][cfg.sweep.objective]:.2f}"
            )
            progress.advance(task)
    by_method = {m: [results[(m, s)] for s in seeds[m]] for m in ABLATION}
    name = DISPLAY.get(cfg.model.name, cfg.model.name)
    paths.reports.mkdir(parents=True, exist_ok=True)
    written = [
        *write_comparison(
            paths.reports,
            cfg.data.name,
            {name: by_method["ce"], f"{name} + RS": by_method["both"]},
        ),
        *write_ablation(paths.reports, cfg.data.name, {LABELS[m]: by_method[m] for m in ABLATION}),
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
