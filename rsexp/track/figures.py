"""The loss-dynamics figure of a run, in the layout of the paper's Fig. 5."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from rsexp.fileio import atomic  # noqa: E402


def loss_dynamics(history: list[dict], path: str | Path, title: str = "") -> Path:
    """2x2 panels vs. epoch: total loss, accuracy, spatial loss, temporal loss."""
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5), constrained_layout=True)
    panels = [
        (axes[0, 0], "Total loss", [("loss/total", "train")]),
        (
            axes[0, 1],
            "Accuracy (%)",
            [("val/top1", "val top-1"), ("val/top5", "val top-5"), ("test/top1", "test top-1")],
        ),
        (
            axes[1, 0],
            "Spatial alignment loss",
            [("loss/spatial", "train"), ("val/loss_spatial", "val")],
        ),
        (axes[1, 1], "Temporal consistency loss", [("loss/temporal", "train")]),
    ]
    for ax, name, series in panels:
        for key, label in series:
            points = [(h["epoch"], h[key]) for h in history if key in h]
            if points:  # test/* exists at the last epoch only: a single marker
                ax.plot(*zip(*points, strict=True), marker="o", ms=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path
