"""``rsexp figures``: the paper's Fig. 5 across runs (mean ± band over seeds, baseline vs
+ RS on one axis) and a sweep's plots from its study (optimisation history, parameter
importances, parallel coordinates, slice) with Optuna's visualisation module: PNG for
papers (matplotlib), interactive HTML (plotly)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from rsexp.experiment.rundir import RunDir  # noqa: E402
from rsexp.report.collect import RunRecord  # noqa: E402
from rsexp.report.results import blocks  # noqa: E402

PANELS = (
    ("Total loss", "loss/total"),
    ("Accuracy (val top-1, %)", "val/top1"),
    ("Spatial alignment loss", "loss/spatial"),
    ("Temporal consistency loss", "loss/temporal"),
)


def history(record: RunRecord) -> list[dict]:
    """The run's per-epoch records: ``metrics.jsonl`` of its folder, or its MLflow
    metric histories."""
    if record.ref.startswith(("sqlite:", "http:", "https:", "postgresql:", "mysql:")):
        from mlflow import MlflowClient

        uri, run_id = record.ref.rsplit("#", 1)
        client = MlflowClient(tracking_uri=uri)
        epochs: dict[int, dict] = {}
        for _, key in PANELS:
            for m in client.get_metric_history(run_id, key):
                epochs.setdefault(m.step, {"epoch": m.step})[key] = m.value
        return [epochs[e] for e in sorted(epochs)]
    return RunDir(record.ref).metrics()


def fig5(records: list[RunRecord], out: Path) -> list[Path]:
    """One ``fig5_<dataset>.png`` per dataset: the four panels of the paper's Fig. 5,
    each row (model, baseline / + RS) as its mean over seeds with a ± std band."""
    written = []
    for ds, block in blocks(records).items():
        fig, axes = plt.subplots(2, 2, figsize=(9, 6.5), constrained_layout=True)
        for label, runs in block.items():
            hist = [history(r) for r in runs]
            for ax, (title, key) in zip(axes.flat, PANELS, strict=True):
                by_epoch: dict[int, list[float]] = {}
                for h in hist:
                    for rec in h:
                        if key in rec:
                            by_epoch.setdefault(int(rec["epoch"]), []).append(rec[key])
                if not by_epoch:
                    continue
                x = np.array(sorted(by_epoch))
                ys = [np.array(by_epoch[e]) for e in x]
                mean = np.array([y.mean() for y in ys])
                std = np.array([y.std(ddof=1) if len(y) > 1 else 0.0 for y in ys])
                dashed = "--" if "+ RS" not in label else "-"
                (line,) = ax.plot(x, mean, dashed, label=f"{label} (n={len(runs)})")
                ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
                ax.set_title(title)
        for ax in axes.flat:
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        if handles:
            axes[0, 0].legend(fontsize=8)
        fig.suptitle(f"{ds}: loss dynamics, mean ± std over seeds")
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"fig5_{ds}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def study_plots(study, out: Path) -> list[Path]:
    """Optuna's plots of ``study``: ``<name>.png`` (matplotlib) and ``<name>.html``
    (plotly) for the optimisation history, parameter importances, parallel coordinates
    and slice plots (importances need completed trials whose values differ)."""
    import optuna.visualization as vis
    import optuna.visualization.matplotlib as vis_mpl

    from rsexp.report.study import importances

    out.mkdir(parents=True, exist_ok=True)
    plots = ["optimization_history", "parallel_coordinate", "slice"]
    if importances(study):  # two completed trials that differ, at least
        plots.append("param_importances")
    written = []
    for name in plots:
        kwargs = {}
        if name == "param_importances":
            from optuna.importance import FanovaImportanceEvaluator

            kwargs["evaluator"] = FanovaImportanceEvaluator(seed=0)
        getattr(vis, f"plot_{name}")(study, **kwargs).write_html(out / f"{name}.html")
        ax = getattr(vis_mpl, f"plot_{name}")(study, **kwargs)
        figure = (ax.flat[0] if isinstance(ax, np.ndarray) else ax).get_figure()
        figure.savefig(out / f"{name}.png", dpi=120, bbox_inches="tight")
        plt.close(figure)
        written += [out / f"{name}.png", out / f"{name}.html"]
    return written
