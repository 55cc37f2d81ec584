"""What a sweep says about its knobs (``rsexp tables --study``): the top trials with
their knobs, Optuna's parameter importances, and one-parameter views (each swept knob
binned, mean ± std of the objective per bin)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from rsexp.report.tables import mean_std


def importances(study: optuna.Study) -> dict[str, float]:
    """Optuna's own importance evaluator (fANOVA), seeded; {} with < 2 finished trials
    or nothing that varied."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 2:
        return {}
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (RuntimeError, ValueError):  # a single distinct point: nothing to attribute
        return {}


def one_parameter_views(study: optuna.Study, bins: int = 3) -> dict[str, list[tuple]]:
    """{knob: [(low, high, mean, std, n)]} over the completed trials, ``bins`` equal
    bins of the knob's sampled range (log-spaced for log-uniform knobs)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    out = {}
    for name in sorted({k for t in done for k in t.params}):
        pairs = [(t.params[name], t.value) for t in done if name in t.params]
        xs = np.array([p[0] for p in pairs], dtype=float)
        lo, hi = float(xs.min()), float(xs.max())
        if lo == hi:
            out[name] = [(lo, hi, *mean_std([p[1] for p in pairs]), len(pairs))]
            continue
        dist = next(t.distributions[name] for t in done if name in t.distributions)
        log = getattr(dist, "log", False) and lo > 0
        edges = np.geomspace(lo, hi, bins + 1) if log else np.linspace(lo, hi, bins + 1)
        rows = []
        for b in range(bins):
            last = b == bins - 1
            inside = [v for x, v in pairs if edges[b] <= x and (x < edges[b + 1] or last)]
            if inside:
                rows.append((float(edges[b]), float(edges[b + 1]), *mean_std(inside), len(inside)))
        out[name] = rows
    return out


def write_study_tables(
    study: optuna.Study, out: Path, top: int = 5, provenance: str = ""
) -> tuple[list[Path], str]:
    """``study.md`` and ``study.csv``; returns the files and the Markdown text."""
    out.mkdir(parents=True, exist_ok=True)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    best = sorted(done, key=lambda t: t.value, reverse=maximize)[:top]
    knobs = sorted({k for t in done for k in t.params})
    md = [
        f"Study {study.study_name}: {len(done)} completed trials of "
        f"{len(study.get_trials(deepcopy=False))}.",
        "",
        f"Top {len(best)} trials:",
        "",
        "| trial | value | " + " | ".join(knobs) + " |",
        "|" + " --- |" * (len(knobs) + 2),
    ]
    for t in best:
        vals = [f"{t.params[k]:.4g}" if k in t.params else "—" for k in knobs]
        md.append(f"| {t.number} | {t.value:.2f} | " + " | ".join(vals) + " |")
    imp = importances(study)
    md += ["", "Parameter importances (Optuna, fANOVA):", "", "| knob | importance |"]
    md += ["| --- | --- |"] + [f"| {k} | {v:.3f} |" for k, v in imp.items()]
    if not imp:
        md.append("| (too few completed trials) | — |")
    md += ["", "One-parameter views (objective per bin of each knob):", ""]
    md += ["| knob | bin | mean ± std | n |", "| --- | --- | --- | --- |"]
    views = one_parameter_views(study)
    for k, rows in views.items():
        for lo, hi, m, s, n in rows:
            md.append(f"| {k} | [{lo:.3g}, {hi:.3g}] | {m:.2f} ± {s:.2f} | {n} |")
    text = "\n".join(md)
    (out / "study.md").write_text(text + (f"\n\n<!-- {provenance} -->\n" if provenance else "\n"))
    with (out / "study.csv").open("w") as f:
        f.write("section,knob,trial_or_bin,value,std,n\n")
        for t in best:
            for k in knobs:
                if k in t.params:
                    f.write(f"top,{k},{t.number},{t.params[k]:.6g},,\n")
            f.write(f"top,value,{t.number},{t.value:.6g},,\n")
        for k, v in imp.items():
            f.write(f"importance,{k},,{v:.6g},,\n")
        for k, rows in views.items():
            for lo, hi, m, s, n in rows:
                f.write(f"bin,{k},{lo:.6g}-{hi:.6g},{m:.6g},{s:.6g},{n}\n")
        if provenance:
            f.write(f"# {provenance}\n")
    return [out / "study.md", out / "study.csv"], text
