"""After the trials: the best knobs and the baseline over seeds, the ablation, tables.

Confirmation runs are trained in processes *spawned* fresh: the driver has already run
torch (the guidance crop of real videos), and a process forked after torch's thread
pools have started can deadlock in its first parallel op.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from rich.console import Console
from rich.progress import Progress

from rsexp.config import Config
from rsexp.experiment.interrupts import Interrupted
from rsexp.report.collect import collect
from rsexp.report.figures import fig5, study_plots
from rsexp.report.labels import ABLATION, ROW_LABELS, model_name
from rsexp.report.results import provenance_line
from rsexp.report.tables import Line, write_table
from rsexp.sweep import space as sp
from rsexp.sweep.common import (
    PARENT_ATTR,
    SweepPaths,
    SweepStopped,
    run_jobs,
    run_tags,
)
from rsexp.track.parent import finish_parent_run


def confirmation_rows(cfg: Config, knobs: dict) -> dict[str, tuple[dict, tuple[int, ...]]]:
    """Rows -> (knobs, seeds). The comparison uses the best knobs as found (a term the
    sweep switched off stays off); an ablation row with a term on uses the best weight,
    or the base config's (the paper's) when the sweep switched that term off."""
    base = sp.knobs_of(cfg)
    on_s = knobs["lambda_s"] or base["lambda_s"]
    on_t = knobs["lambda_t"] or base["lambda_t"]
    conf, abl = cfg.sweep.confirm_seeds, cfg.sweep.ablation_seeds
    return {
        "baseline": (dict(knobs, lambda_s=0.0, lambda_t=0.0), conf),
        "rs": (knobs, conf),
        "ce": (dict(knobs, lambda_s=0.0, lambda_t=0.0), abl),
        "spatial": (dict(knobs, lambda_s=on_s, lambda_t=0.0), abl),
        "temporal": (dict(knobs, lambda_s=0.0, lambda_t=on_t), abl),
        "both": (dict(knobs, lambda_s=on_s, lambda_t=on_t), abl),
    }


def confirm(
    cfg: Config,
    overrides: list[str],
    config,
    study: optuna.Study,
    paths: SweepPaths,
    devices: list[str | None],
    console: Console,
) -> dict:
    """The confirmation runs of the best trial (one per worker slot of ``devices``,
    each on its slot's GPU), then the tables, figures and the parent run's close."""
    workers = len(devices)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials()):
        reasons = sorted({t.user_attrs.get("fail_reason", "") for t in study.get_trials()} - {""})
        raise SweepStopped(
            f"study {study.study_name} has no completed trial to confirm"
            + (f" (trial failures: {'; '.join(reasons[:3])})" if reasons else "")
            + f"; see {paths.root}/worker-*.log"
        )
    best = study.best_trial
    knobs = best.user_attrs.get("knobs") or sp.knobs_from_params(best.params, cfg.sweep.space)
    parent = study.user_attrs.get(PARENT_ATTR)
    rows = confirmation_rows(cfg, knobs)
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
            # retrained on the whole training side; reported on the test split
            "data.val_fraction=0",
            *(["train.threads=1"] if workers > 1 else []),
            *run_tags(study.study_name, "confirm", parent, component=name[0]),
        ]
        for (key, seed), name in runs.items()
    }
    results: dict[tuple[str, int], dict] = {}
    with Progress(console=console) as progress:
        task = progress.add_task("confirmation runs", total=len(jobs))

        def done(name: tuple, r: dict) -> None:
            results[name] = r
            shown = ", ".join(f"{k} {r[k]:.2f}" for k in ("test/top1", "val/top1") if k in r)
            progress.console.print(f"{ROW_LABELS[name[0]]:<11} seed {name[1]}: {shown}")
            progress.advance(task)

        try:
            run_jobs(
                {name: (config, over, str(paths.confirm(*name))) for name, over in jobs.items()},
                workers,
                done,
                devices,
            )
        except KeyboardInterrupt:
            console.print(
                "[yellow]interrupted[/]: the confirmation runs in progress are checkpointed; "
                "run the same command again to continue them"
            )
            raise Interrupted("confirmation interrupted") from None

    # the tables are rendered from the run folders as `rsexp tables` reads them: the
    # same records, the same cells (the rows are known here; rsexp tables finds them
    # by their configs)
    records = {Path(r.ref).resolve(): r for r in collect(str(paths.root)) if r.stage == "confirm"}

    def recs(row: str) -> list:
        k, seeds = rows[row]
        key = tuple(sorted(k.items()))
        return [records[paths.confirm(*runs[(key, seed)]).resolve()] for seed in seeds]

    name, ds = model_name(cfg.model.name), cfg.data.name
    prov = provenance_line(f"sweep {study.study_name}", list(records.values()))
    comparison = {
        ds: [
            Line((ds,), name, recs("baseline")),
            Line((ds,), f"{name} + RS", recs("rs"), recs("baseline")),
        ]
    }
    ablation = {
        ds: [
            Line((ds, name), ROW_LABELS[m], recs(m), None if m == "ce" else recs("ce"))
            for m in ABLATION
        ]
    }
    head = f"Sweep {study.study_name}: the best trial's settings against the baseline."
    written, _, shown = write_table(
        paths.reports / "comparison", comparison, ["Dataset"], head, prov
    )
    written += write_table(
        paths.reports / "ablation", ablation, ["Dataset", "Model"],
        "Component ablation (CE only, + spatial, + temporal, + both)", prov,
    )[0]  # fmt: skip
    # Fig. 5 over the confirmation runs and the study's plots, next to the tables
    written += fig5(list(records.values()), paths.reports) + study_plots(
        study, paths.reports / "study"
    )
    info = {
        "study": study.study_name,
        "best_trial": best.number,
        "best_value": best.value,
        "best_knobs": knobs,
        "reports": [str(p) for p in written],
    }
    (paths.reports / "sweep.json").write_text(json.dumps(info, indent=1))
    finish_parent_run(
        cfg.track,
        cfg.train.runs_dir,
        parent,
        cfg.experiment,
        params={f"best.{k}": str(v) for k, v in knobs.items()},
        metrics={f"best/{cfg.sweep.objective}": float(best.value)},
        files=[Path(p) for p in written],
    )
    console.print(shown, markup=False)
    console.print(
        f"[green]sweep done[/]: best trial {best.number} "
        f"({cfg.sweep.objective} {best.value:.2f}) | wrote "
        + ", ".join(map(str, written))
        + f" | runs in {paths.root}"
    )
    return info
