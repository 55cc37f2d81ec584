"""``rsexp figures``: the paper's Fig. 5 across runs (mean ± band over seeds, baseline vs
+ RS on one axis) and a sweep's plots from its study (optimisation history, parameter
importances, parallel coordinates, slice) with Optuna's visualisation module: PNG for
papers (matplotlib), interactive HTML (plotly)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from rsexp.errors import RunFileError  # noqa: E402
from rsexp.experiment.rundir import RunDir  # noqa: E402
from rsexp.report.collect import RunRecord  # noqa: E402
from rsexp.report.rows import group_rows  # noqa: E402

# (title, key); the accuracy panel's key is chosen per dataset (see ``accuracy_key``)
PANELS = (
    ("Total loss", "loss/total"),
    ("Accuracy", None),
    ("Spatial alignment loss", "loss/spatial"),
    ("Temporal consistency loss", "loss/temporal"),
)
HISTORY_KEYS = ("loss/total", "loss/spatial", "loss/temporal", "val/top1", "train/top1",
                "test/top1")  # fmt: skip


def history(record: RunRecord) -> list[dict]:
    """The run's per-epoch records: ``metrics.jsonl`` of its folder, or its MLflow
    metric histories."""
    if record.ref.startswith(("sqlite:", "http:", "https:", "postgresql:", "mysql:")):
        from mlflow import MlflowClient

        uri, run_id = record.ref.rsplit("#", 1)
        client = MlflowClient(tracking_uri=uri)
        epochs: dict[int, dict] = {}
        for key in HISTORY_KEYS:
            for m in client.get_metric_history(run_id, key):
                epochs.setdefault(m.step, {"epoch": m.step})[key] = m.value
        return [epochs[e] for e in sorted(epochs)]
    return RunDir(record.ref).metrics()


def accuracy_key(histories: list[list[dict]]) -> str:
    """``val/top1`` when every run has a validation split, else ``train/top1`` (runs
    trained on the whole training side, as confirmation and paper runs are)."""
    has_val = histories and all(any("val/top1" in h for h in hist) for hist in histories)
    return "val/top1" if has_val else "train/top1"


def band(key: str, values: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and the ± std band per epoch, kept inside what the quantity can take: every
    panel's quantity is >= 0 (losses, a KL divergence, a JSD, accuracies), accuracies
    are <= 100."""
    mean = np.array([v.mean() for v in values])
    std = np.array([v.std(ddof=1) if len(v) > 1 else 0.0 for v in values])
    high = mean + std
    if key.endswith("top1"):
        high = np.minimum(high, 100.0)
    return mean, np.maximum(mean - std, 0.0), high


@dataclass
class Curve:
    """One row's curve in one panel: epochs, mean, band; ``point``: (epoch, value) of
    the final test accuracy on a training-accuracy panel."""

    label: str
    n: int  # seeds
    baseline: bool
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    point: tuple[int, float] | None = None


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, RuntimeWarning, stacklevel=3)


def fig5_data(records: list[RunRecord], warn=_warn) -> dict[str, dict[str, list[Curve]]]:
    """What :func:`fig5` draws: ``{dataset: {panel title: [curves]}}``, one curve per
    row (one configuration, :mod:`rsexp.report.rows`), its mean over seeds with a ± std
    band. Accuracy is per-epoch ``val/top1`` where every run has a validation split,
    else per-epoch training accuracy with the final ``test/top1`` as a point; the
    panel's title says which."""
    out, readable, histories = {}, [], {}
    for r in records:  # a run whose history cannot be read is left out, by name
        try:
            histories[r.ref] = history(r)
        except RunFileError as e:
            warn(f"{e}; run {r.run_id} is left out of Fig. 5")
            continue
        readable.append(r)
    for ds, rows in group_rows(readable).items():
        hists = {row.label: [histories[r.ref] for r in row.runs] for row in rows}
        acc = accuracy_key([h for hs in hists.values() for h in hs])
        names = {"val/top1": "val top-1", "train/top1": "train top-1; ● final test top-1"}
        panels: dict[str, list[Curve]] = {}
        for title, key in PANELS:
            key = key or acc
            title = title if key != acc else f"{title} ({names[acc]}, %)"
            curves = panels.setdefault(title, [])
            for row in rows:
                by_epoch: dict[int, list[float]] = {}
                for h in hists[row.label]:
                    for rec in h:
                        if key in rec:
                            by_epoch.setdefault(int(rec["epoch"]), []).append(rec[key])
                if not by_epoch:
                    continue
                x = np.array(sorted(by_epoch))
                curve = Curve(row.label, len(row.runs), row.method == "baseline", x,
                              *band(key, [np.array(by_epoch[e]) for e in x]))  # fmt: skip
                tests = [r.metrics["test/top1"] for r in row.runs if "test/top1" in r.metrics]
                if key == "train/top1" and tests:
                    curve.point = (int(x[-1]), float(np.mean(tests)))
                curves.append(curve)
        out[ds] = panels
    return out


def fig5(records: list[RunRecord], out: Path, warn=_warn) -> list[Path]:
    """One ``fig5_<dataset>.png`` per dataset: the four panels of the paper's Fig. 5
    (:func:`fig5_data`), baselines dashed; ``warn`` is told of each run left out."""
    written = []
    for ds, panels in fig5_data(records, warn).items():
        fig, axes = plt.subplots(2, 2, figsize=(9, 6.5), constrained_layout=True)
        for ax, (title, curves) in zip(axes.flat, panels.items(), strict=True):
            for c in curves:
                style = "--" if c.baseline else "-"
                (line,) = ax.plot(c.x, c.mean, style, label=f"{c.label} (n={c.n})")
                ax.fill_between(c.x, c.low, c.high, color=line.get_color(), alpha=0.2)
                if c.point is not None:
                    ax.plot(*c.point, "o", color=line.get_color(), ms=6)
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        handles, _ = axes[0, 0].get_legend_handles_labels()
        if handles:
            axes[0, 0].legend(fontsize=8)
        fig.suptitle(f"{ds}: loss dynamics, mean ± std over seeds (n per row in the legend)")
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
