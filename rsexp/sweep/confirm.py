"""After the trials: the best trial's config and the baseline over seeds, the ablation,
the tables and figures (a grid of configs -> runs -> tables, :mod:`rsexp.grid`).

The best trial's config is made again from its params by the search space's own
function (:func:`rsexp.sweep.space.suggest` on ``optuna.trial.FixedTrial``): no inverse
map from params back to settings.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from rich.console import Console

from rsexp.config import Config, with_values
from rsexp.grid import GridRow, GridRun, Table, run_grid
from rsexp.jobs import slots
from rsexp.report.collect import collect
from rsexp.report.figures import fig5, study_plots
from rsexp.report.labels import ABLATION, ROW_LABELS, model_name
from rsexp.sweep import space as sp
from rsexp.sweep.common import PARENT_ATTR, SweepPaths, SweepStopped, tagged
from rsexp.track.parent import finish_parent_run


def confirmation_rows(base: Config, best: Config) -> dict[str, tuple[Config, tuple[int, ...]]]:
    """Rows -> (config, seeds). The comparison uses the best trial's config as found (a
    term the sweep switched off stays off); an ablation row with a term on uses the best
    weight, or the base config's (the paper's) when the sweep switched that term off."""
    on_s = best.loss.lambda_s or base.loss.lambda_s
    on_t = best.loss.lambda_t or base.loss.lambda_t
    conf, abl = base.sweep.confirm_seeds, base.sweep.ablation_seeds

    def lam(s: float, t: float) -> Config:
        return with_values(best, {"loss.lambda_s": s, "loss.lambda_t": t})

    return {
        "baseline": (lam(0.0, 0.0), conf),
        "rs": (best, conf),
        "ce": (lam(0.0, 0.0), abl),
        "spatial": (lam(on_s, 0.0), abl),
        "temporal": (lam(0.0, on_t), abl),
        "both": (lam(on_s, on_t), abl),
    }


def best_config(base: Config, trial: optuna.trial.FrozenTrial) -> Config:
    """The config a finished trial trained with, made again from its params (the epochs
    and tags of the confirmation runs, not the trial's)."""
    return sp.suggest(optuna.trial.FixedTrial(trial.params, trial.number), base)


def confirm(
    cfg: Config,
    study: optuna.Study,
    paths: SweepPaths,
    devices: list[str | None],
    console: Console,
    runner=None,
) -> dict:
    """The confirmation runs of the best trial (one per worker slot of ``devices``,
    each on its slot's GPU; or by ``runner``, e.g. as Slurm jobs), then the tables,
    figures and the parent run's close."""
    workers = len(devices)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials()):
        reasons = sorted({t.user_attrs.get("fail_reason", "") for t in study.get_trials()} - {""})
        raise SweepStopped(
            f"study {study.study_name} has no completed trial to confirm"
            + (f" (trial failures: {'; '.join(reasons[:3])})" if reasons else "")
            + f"; see {paths.root}/worker-*.log"
        )
    best = study.best_trial
    parent = study.user_attrs.get(PARENT_ATTR)
    best_cfg = best_config(cfg, best)
    values = sp.values_of(best_cfg)

    def run(row: str, row_cfg: Config, seed: int) -> GridRun:
        # retrained on the whole training side; reported on the test split
        job = with_values(
            row_cfg,
            {"train.seed": seed, "data.val_fraction": 0.0,
             **({"train.threads": 1} if workers > 1 else {})},
        )  # fmt: skip
        job = tagged(job, study.study_name, "confirm", parent, component=row)
        return GridRun(job, paths.confirm(row, seed))

    rows = {name: [run(name, c, s) for s in seeds] for name, (c, seeds) in
            confirmation_rows(cfg, best_cfg).items()}  # fmt: skip
    name, ds = model_name(cfg.model.name), cfg.data.name
    comparison = Table(
        "comparison",
        [GridRow(name, rows["baseline"], lead=(ds,)),
         GridRow(f"{name} + RS", rows["rs"], base=name, lead=(ds,))],
        caption=f"Sweep {study.study_name}: the best trial's settings against the baseline",
    )  # fmt: skip
    ablation = Table(
        "ablation",
        [GridRow(ROW_LABELS[m], rows[m], base=None if m == "ce" else ROW_LABELS["ce"],
                 lead=(ds, name)) for m in ABLATION],
        lead_header=["Dataset", "Model"],
        caption="Component ablation (CE only, + spatial, + temporal, + both)",
    )  # fmt: skip
    paths.reports.mkdir(parents=True, exist_ok=True)
    written, shown = run_grid(
        [comparison, ablation], paths.reports, workers, slots(devices), console,
        "confirmation runs", f"sweep {study.study_name}", runner=runner,
    )  # fmt: skip
    # Fig. 5 over the confirmation runs and the study's plots, next to the tables
    confirmed = [r for r in collect(str(paths.root / "confirm")) if r.stage == "confirm"]
    written += fig5(confirmed, paths.reports) + study_plots(study, paths.reports / "study")
    info = {
        "study": study.study_name,
        "best_trial": best.number,
        "best_value": best.value,
        "best_values": values,
        "reports": [str(p) for p in written],
    }
    (paths.reports / "sweep.json").write_text(json.dumps(info, indent=1))
    finish_parent_run(
        cfg.track,
        cfg.train.runs_dir,
        parent,
        cfg.experiment,
        params={f"best.{k}": str(v) for k, v in values.items()},
        metrics={f"best/{cfg.sweep.objective}": float(best.value)},
        files=[Path(p) for p in written],
    )
    console.print(shown["comparison"], markup=False)
    console.print(
        f"[green]sweep done[/]: best trial {best.number} "
        f"({cfg.sweep.objective} {best.value:.2f}) | wrote "
        + ", ".join(map(str, written))
        + f" | runs in {paths.root}"
    )
    return info
