"""Console reporting of one run: the header, progress bars, one line per epoch, the end."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rsexp.config import Config


def progress_columns() -> tuple:
    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def progress_bar(console: Console) -> Progress:
    return Progress(*progress_columns(), console=console, transient=True)


def describe_splits(data) -> str:
    """``640 train / 320 val / 320 test clips``."""
    sets = {"train": data.train, **data.eval_sets}
    return " / ".join(f"{len(v)} {k}" for k, v in sets.items()) + " clips"


class Reporter:
    """Everything a run prints, in one place (the loop only calls it)."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console()

    def progress(self) -> Progress:
        return progress_bar(self.console)

    def header(self, run_dir: Path, resumed: bool) -> None:
        c = self.console
        c.rule(f"[bold]rsexp {'resume' if resumed else 'train'}[/] {escape(str(run_dir))}")
        # the whole config is one file away (the CLI's --verbose prints it first), so
        # that notices such as W&B's offline line stay on screen
        c.print(f"config: {escape(str(Path(run_dir) / 'config.yaml'))}")

    def setup(self, cfg: Config, run, tracker_ids: dict[str, str]) -> None:
        """Model, data and guidance in one line; where the run is tracked."""
        data = run.data
        skipped = f" ({data.skipped_videos} bad videos left out)" if data.skipped_videos else ""
        self.console.print(
            f"model [bold]{cfg.model.name}[/]: {run.num_params:,} parameters on "
            f"{run.device}{' (bf16 autocast)' if run.amp else ''} | data "
            f"[bold]{cfg.data.name}[/]: {describe_splits(data)}, "
            f"{len(data.class_names)} classes{skipped} | guidance "
            f"{escape(data.guidance.source)}: {data.guided_frame_fraction:.0%} of training "
            f"frames guided"
        )
        ids = ", ".join(f"{k} {v}" for k, v in tracker_ids.items())
        self.console.print(f"tracking: local{', ' + ids if ids else ''}")

    def resumed(self, start_epoch: int, partial: dict | None, step: int, filled: dict) -> None:
        where = (
            f" in epoch {partial['epoch']} at batch {partial['batches_done']}" if partial else ""
        )
        self.console.print(
            f"resuming after epoch {start_epoch}{where} (step {step})"
            + "".join(f"; {k} given epochs {v}" for k, v in filled.items() if v)
        )

    def epoch(self, record: dict, epochs: int) -> None:
        r = record
        evals = "".join(
            f"  {s} top1 {r[f'{s}/top1']:.2f}  top5 {r[f'{s}/top5']:.2f}  "
            f"clip loss {r[f'{s}/clip_loss']:.4f}"
            + (  # action segmentation: frame-wise scores too
                f"  MoF {r[f'{s}/mof']:.2f}  Edit {r[f'{s}/edit']:.2f}  "
                f"F1@10/25/50 {r[f'{s}/f1@10']:.1f}/{r[f'{s}/f1@25']:.1f}/"
                f"{r[f'{s}/f1@50']:.1f}"
                if f"{s}/mof" in r
                else ""
            )
            for s in ("val", "test")
            if f"{s}/top1" in r
        )
        self.console.print(
            f"epoch {r['epoch']:>3}/{epochs}  loss {r['loss/total']:.4f} "
            f"(ce {r['loss/ce']:.4f}, spatial {r.get('loss/spatial', 0.0):.4f}, "
            f"temporal {r['loss/temporal']:.4f}){evals}  {r['time/epoch_s']:.1f}s"
        )

    def stopped(self, last_epoch: int, epochs: int, run_dir: Path) -> None:
        self.console.print(
            f"[yellow]stopped after epoch {last_epoch}/{epochs}[/]; continue with: "
            f"rsexp resume {escape(str(run_dir))}"
        )

    def interrupted(self, reason: str, run_dir: Path) -> None:
        self.console.print(
            f"[yellow]{escape(reason or 'interrupted')}[/]; checkpointed. Continue with: "
            f"rsexp resume {escape(str(run_dir))}"
        )

    def failed(self, reason: str, run_dir: Path) -> None:
        self.console.print(
            f"[red]run failed[/]: {escape(reason)} | status and reason in "
            f"{escape(str(run_dir))}/summary.json"
        )

    def done(self, summary: dict, run_dir: Path, files: list[str]) -> None:
        parts = []
        if "val/top1" in summary:
            parts.append(
                f"val top1 {summary['val/top1']:.2f} (best {summary['best/val/top1']:.2f} "
                f"at epoch {summary['best_epoch']})"
            )
        if "test/top1" in summary:
            parts.append(f"test top1 {summary['test/top1']:.2f}")
        self.console.print(
            f"[green]done[/]: {', '.join(parts)} | wrote "
            f"{escape(str(run_dir))}/{{{', '.join(files)}}}"
        )
