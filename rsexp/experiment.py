"""One run: config -> data, model, optimiser -> epochs -> checkpoints -> summary; resume.

The run folder ``runs/<experiment>/<run_id>/`` is the source of truth:
``config.yaml``, ``metrics.jsonl`` (one line per epoch), ``summary.json``,
``checkpoints/{last,best}.pt``, ``overlays/``, ``figures/`` and ``trackers.json`` (the
ids of the MLflow / W&B runs it mirrors). Each checkpoint carries the metric history up
to its epoch; an epoch ends checkpoint-first, then logged, so a resume can give every
backend exactly the epochs it lacks (see :meth:`rsexp.track.Tracker.sync`).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.syntax import Syntax
from torch.utils.data import DataLoader

import rsexp.core.models  # noqa: F401  (registers the models)
from rsexp.config import Config, ConfigError, flatten, from_dict, load_yaml, to_dict
from rsexp.core.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from rsexp.core.metrics import MeanMeter
from rsexp.core.models import load_pretrained
from rsexp.core.optim import lr_at, param_groups
from rsexp.core.registry import create_model
from rsexp.core.step import LossWeights, NonFiniteLossError, eval_step, train_step
from rsexp.data import REAL_DATASETS, build_raw
from rsexp.data.dataset import ClipDataset
from rsexp.data.transforms import SpatialAugment
from rsexp.guidance.store import GuidanceStore, select_covered
from rsexp.track import Tracker
from rsexp.track.figures import loss_dynamics
from rsexp.track.local import METRICS_FILE, overlay_path
from rsexp.track.overlay import render_overlay
from rsexp.track.provenance import provenance, redact

CONFIG_FILE, SUMMARY_FILE = "config.yaml", "summary.json"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: the run was checkpointed mid-epoch and marked KILLED."""


class StopRun(Exception):
    """Raised by an ``on_epoch`` hook to end a run early (a pruned sweep trial): the
    epoch is checkpointed and logged, the summary says ``stopped`` with the reason."""


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    history: list[dict]


# ------------------------------------------------------------------------------ helpers


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' requested but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def new_run_id(cfg: Config) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{cfg.model.name}-{cfg.method}-s{cfg.train.seed}-{secrets.token_hex(2)}"


def find_run_dir(run: str | Path, runs_dir: str | Path = "runs") -> Path:
    """A run folder given its path or its run id (searched under ``runs_dir/*/``)."""
    path = Path(run)
    if (path / CONFIG_FILE).is_file():
        return path
    matches = sorted(Path(runs_dir).glob(f"*/{run}"))
    matches = [m for m in matches if (m / CONFIG_FILE).is_file()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise FileNotFoundError(f"no run folder or run id {str(run)!r} (looked in {runs_dir}/*/)")
    raise FileNotFoundError(f"run id {run!r} is ambiguous: {', '.join(map(str, matches))}")


def write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False))
    os.replace(tmp, path)


def save_config(cfg: Config, path: Path) -> None:
    """``config.yaml`` with secret-looking values redacted (they never reach a file)."""
    path.write_text(yaml.safe_dump(redact(to_dict(cfg)), sort_keys=False))


def loss_weights(cfg: Config) -> LossWeights:
    lc = cfg.loss
    return LossWeights(
        lc.lambda_s,
        lc.lambda_t,
        lc.tau,
        lc.eps,
        lc.consensus,
        lc.consensus_power,
        lc.ce_on,
        lc.spatial_every,
    )


# ------------------------------------------------------------------------------ data


def progress_columns() -> tuple:
    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


@dataclass
class Data:
    train: ClipDataset
    val: ClipDataset
    class_names: list[str]
    guidance: GuidanceStore
    guidance_path: Path
    guided_frame_fraction: float
    digest: str
    skipped_videos: int = 0
    cache_dirs: list[Path] = field(default_factory=list)


def build_data(cfg: Config, console: Console | None = None) -> Data:
    """Datasets with guidance attached: ``coverage`` picks the training videos whose
    guidance the spatial loss may use; validation clips keep all theirs (for
    ``val/loss_spatial``). Real videos are decoded into the clip cache first, with a
    progress bar on ``console``."""
    g = cfg.guidance
    with Progress(*progress_columns(), console=console or Console(), transient=True) as bar:

        def progress(description: str, total: int):
            task = bar.add_task(description, total=total)
            return lambda: bar.advance(task)

        raw = build_raw(cfg.data.name, cfg.data, g.grid, progress)
    path = Path(g.path) if g.path else raw.guidance_path
    if not g.path and raw.exact_guidance is not None and not path.is_file():
        GuidanceStore.from_masks(*raw.exact_guidance, grid=g.grid).save(path)
    if not path.is_file() and cfg.loss.lambda_s == 0:
        store = GuidanceStore(grid=g.grid, source=f"none ({path} absent; lambda_s = 0)")
    elif not path.is_file():
        raise FileNotFoundError(
            f"guidance file not found: {path}. The spatial loss (loss.lambda_s="
            f"{cfg.loss.lambda_s}) needs the {cfg.data.name} guidance in the authors' "
            f"released JSON format there (or set guidance.path=<file>); train the "
            f"baseline with loss.lambda_s=0 loss.lambda_t=0."
        )
    else:
        store = GuidanceStore.load(path, grid=g.grid)

    def lookup(key: str, frames: np.ndarray) -> np.ndarray:
        return store.clip_mask(key, frames, g.max_frame_gap)[0]

    tr, va = raw.train, raw.val
    covered = select_covered(tr.keys, g.coverage, g.seed)
    train_masks = tr.guidance_masks(lookup, g.grid, keep=covered)
    augment = None
    if cfg.data.augment:
        augment = SpatialAugment(cfg.data.frame_size, g.grid, hflip=cfg.data.hflip)
    train = ClipDataset(
        tr.ids,
        tr.videos,
        tr.labels,
        train_masks,
        choices=tr.choices,
        augment=augment,
        seed=cfg.train.seed,
        train=True,
    )
    val = ClipDataset(va.ids, va.videos, va.labels, va.guidance_masks(lookup, g.grid))
    frac = float(train.masks.any(-1).float().mean())
    return Data(
        train,
        val,
        raw.class_names,
        store,
        path,
        frac,
        raw.digest,
        len(raw.skipped),
        raw.cache_dirs,
    )


def prepare(cfg: Config, console: Console | None = None) -> Data:
    """Read the dataset's index, decode what the clip cache lacks, load the guidance, and
    print what is ready where (``rsexp prepare``; the sweep driver does it first)."""
    console = console or Console()
    data = build_data(cfg, console)

    def size(folder: Path) -> str:
        n = sum(f.stat().st_size for f in folder.iterdir())
        return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"

    skipped = f", {data.skipped_videos} bad videos left out" if data.skipped_videos else ""
    split = f" (split {cfg.data.split})" if cfg.data.name in REAL_DATASETS else ""
    console.print(
        f"data [bold]{cfg.data.name}[/]{split}: {len(data.train)} train / "
        f"{len(data.val)} val clips, {len(data.class_names)} classes{skipped} | guidance "
        f"{data.guidance.source}: {data.guided_frame_fraction:.0%} of training frames "
        f"guided (coverage {cfg.guidance.coverage:g}) | cache: "
        + ", ".join(f"{d} ({size(d)})" for d in data.cache_dirs)
    )
    return data


def build_model(cfg: Config, num_classes: int) -> torch.nn.Module:
    m, s = cfg.model, cfg.loss.segments
    model = create_model(
        m.name,
        num_classes=num_classes,
        num_frames=cfg.data.num_frames,
        img_size=cfg.data.frame_size,
        guidance_grid=cfg.guidance.grid,
        patch_size=m.patch_size,
        tubelet=m.tubelet,
        embed_dim=m.embed_dim,
        depth=m.depth,
        temporal_depth=m.temporal_depth,
        num_heads=m.num_heads,
        mlp_ratio=m.mlp_ratio,
        drop_rate=m.drop_rate,
        drop_path=m.drop_path,
        attn_layer=m.attn_layer,
        attn_to_grid=m.attn_to_grid,
        segments=(s.immediate, s.contextual, s.immediate_at),
    )
    if m.pretrained:
        if m.name != "timesformer":
            raise ConfigError("model.pretrained: weights load into 'timesformer' only")
        load_pretrained(model, m.pretrained)
    return model


# ------------------------------------------------------------------------------ the run


class Experiment:
    """A training run bound to its run folder. Use :func:`train` / :func:`resume`."""

    def __init__(self, cfg: Config, run_dir: Path, console: Console | None = None, on_epoch=None):
        self.cfg, self.run_dir = cfg, run_dir
        self.on_epoch = on_epoch  # called with each finished epoch's record
        self.console = console or Console()
        self.ckpt_dir = run_dir / "checkpoints"
        self.history: list[dict] = []
        self.best: dict | None = None
        self.start_epoch = 0
        self.global_step = 0
        self.partial: dict | None = None  # progress inside an interrupted epoch
        self.tracker = Tracker(cfg.track, run_dir, cfg.train.runs_dir, self.console)

    # -- setup
    def start_tracking(self) -> None:
        """Connect every backend first: an unreachable server fails before any work."""
        cfg = self.cfg
        tags = {
            "dataset": cfg.data.name,
            "model": cfg.model.name,
            "method": cfg.method,
            "seed": str(cfg.train.seed),
            **cfg.track.tags,
        }
        self.tracker.start(self.run_dir.name, cfg.experiment, tags)

    def setup(self) -> None:
        cfg = self.cfg
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.train.seed)
        self.device = resolve_device(cfg.train.device)
        self.amp = cfg.train.amp and self.device.type == "cuda"
        self.data = build_data(cfg, self.console)
        self.model = build_model(cfg, len(self.data.class_names)).to(self.device)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model, cfg.optim.weight_decay),
            lr=cfg.optim.lr,
            betas=(cfg.optim.beta1, cfg.optim.beta2),
        )
        self.weights = loss_weights(cfg)
        self.steps_per_epoch = -(-len(self.data.train) // cfg.data.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.train.epochs
        self.warmup_steps = int(round(cfg.optim.warmup_epochs * self.steps_per_epoch))
        self.num_params = sum(p.numel() for p in self.model.parameters())
        self.overlay_clips = self.pick_overlay_clips(cfg.track.overlays.num_clips)

    def pick_overlay_clips(self, n: int) -> list[int]:
        """Fixed validation clips for the overlays, one class after another; clips with
        guidance first (their cells are outlined), any clips when none has guidance."""
        val = self.data.val
        guided = [i for i in range(len(val)) if bool(val.masks[i].any())]
        by_class: dict[int, list[int]] = {}
        for i in guided or range(len(val)):
            by_class.setdefault(int(val.labels[i]), []).append(i)
        order = [
            c[k]
            for k in range(max(map(len, by_class.values()), default=0))
            for c in by_class.values()
            if k < len(c)
        ]
        return order[:n]

    def log_params(self) -> None:
        params = {
            k: json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)
            for k, v in flatten(to_dict(self.cfg)).items()
        }
        params.update(provenance(str(self.device), self.data.digest, self.data.guidance_path))
        params["num_params"] = str(self.num_params)
        self.tracker.log_params(redact(params))

    def announce(self, resumed: bool) -> None:
        c = self.console
        c.rule(f"[bold]rsexp {'resume' if resumed else 'train'}[/] {self.run_dir}")
        c.print(Syntax(yaml.safe_dump(redact(to_dict(self.cfg)), sort_keys=False), "yaml"))
        c.print(
            f"model [bold]{self.cfg.model.name}[/]: {self.num_params:,} parameters on "
            f"{self.device}{' (bf16 autocast)' if self.amp else ''} | data "
            f"[bold]{self.cfg.data.name}[/]: {len(self.data.train)} train / "
            f"{len(self.data.val)} val clips, {len(self.data.class_names)} classes"
            + (
                f" ({self.data.skipped_videos} bad videos left out)"
                if self.data.skipped_videos
                else ""
            )
            + " | "
            f"guidance {self.data.guidance.source}: "
            f"{self.data.guided_frame_fraction:.0%} of training frames guided"
        )
        ids = ", ".join(f"{k} {v}" for k, v in self.tracker.run_ids.items())
        c.print(f"tracking: local{', ' + ids if ids else ''}")

    # -- checkpoints
    def state(self, epoch: int, partial: dict | None = None) -> dict:
        return {
            "config": to_dict(self.cfg),
            "epoch": epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {
                "step": self.global_step,
                "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps,
            },
            "scaler": None,  # bf16 autocast needs no loss scaling
            "rng": capture_rng(),
            "history": self.history,
            "best": self.best,
            "partial": partial,
        }

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.global_step = state["global_step"]
        self.start_epoch = state["epoch"]
        self.history = list(state["history"])
        self.best = state["best"]
        self.partial = state.get("partial")
        restore_rng(state["rng"])

    # -- epochs
    def train_epoch(self, epoch: int, progress: Progress) -> dict[str, float]:
        cfg = self.cfg
        self.data.train.set_epoch(epoch)
        # the order of an epoch is a function of (seed, epoch): identical after a resume,
        # which also lets an interrupted epoch skip the batches it already trained on
        gen = torch.Generator().manual_seed(cfg.train.seed * 100_003 + epoch)
        order = torch.randperm(len(self.data.train), generator=gen).tolist()
        meter, done = MeanMeter(), 0
        if self.partial and self.partial["epoch"] == epoch:
            done = self.partial["batches_done"]
            meter.sums, meter.count = dict(self.partial["sums"]), dict(self.partial["count"])
        self.partial = None
        loader = DataLoader(
            self.data.train,
            batch_size=cfg.data.batch_size,
            sampler=order[done * cfg.data.batch_size :],
            num_workers=cfg.data.num_workers,
            # its own generator: a DataLoader otherwise draws its worker seed from the
            # global RNG, which would shift dropout after a mid-epoch resume
            generator=torch.Generator().manual_seed(cfg.train.seed * 100_003 + epoch),
            pin_memory=self.device.type == "cuda",
        )
        task = progress.add_task(
            f"epoch {epoch}/{cfg.train.epochs} train", total=self.steps_per_epoch, completed=done
        )
        i = done
        try:
            for i, batch in enumerate(loader, start=done):
                lr = lr_at(
                    self.global_step,
                    self.total_steps,
                    self.warmup_steps,
                    cfg.optim.lr,
                    cfg.optim.min_lr_ratio,
                )
                with deferred_interrupts():
                    try:
                        values = train_step(
                            self.model,
                            batch,
                            self.optimizer,
                            self.weights,
                            step=self.global_step,
                            lr=lr,
                            grad_clip=cfg.optim.grad_clip,
                            amp=self.amp,
                        )
                    except NonFiniteLossError as e:
                        raise NonFiniteLossError(
                            f"non-finite loss at epoch {epoch}, step {i + 1}/"
                            f"{self.steps_per_epoch} (global step {self.global_step}): {e}"
                        ) from None
                    meter.update(values, n=len(batch["label"]))
                    self.global_step += 1
                progress.update(
                    task,
                    advance=1,
                    description=(
                        f"epoch {epoch}/{cfg.train.epochs} train loss {values['loss']:.3f}"
                    ),
                )
        except KeyboardInterrupt:
            # the batch in flight is dropped; the finished ones are kept, exactly
            done = self.global_step - (epoch - 1) * self.steps_per_epoch
            partial = {
                "epoch": epoch,
                "batches_done": done,
                "sums": meter.sums,
                "count": meter.count,
            }
            save_checkpoint(self.ckpt_dir / "last.pt", self.state(epoch - 1, partial))
            raise Interrupted(f"interrupted in epoch {epoch} after {done} batches") from None
        progress.remove_task(task)
        means = meter.means()
        means["loss/total"] = means.pop("loss")
        means["lr"] = lr_at(
            self.global_step - 1,
            self.total_steps,
            self.warmup_steps,
            cfg.optim.lr,
            cfg.optim.min_lr_ratio,
        )
        return means

    @torch.no_grad()
    def evaluate(self, progress: Progress | None = None) -> dict[str, float]:
        cfg = self.cfg
        loader = DataLoader(
            self.data.val,
            batch_size=cfg.data.batch_size,
            shuffle=False,
            num_workers=cfg.data.num_workers,
            generator=torch.Generator().manual_seed(0),
        )
        task = progress.add_task("val", total=len(loader)) if progress else None
        tot = {
            "n": 0,
            "top1": 0,
            "top5": 0,
            "clip_loss": 0.0,
            "spatial_sum": 0.0,
            "spatial_frames": 0,
        }
        for batch in loader:
            r = eval_step(self.model, batch, self.weights, amp=self.amp)
            for k in tot:
                tot[k] += r[k]
            if progress:
                progress.update(task, advance=1)
        if progress:
            progress.remove_task(task)
        n = max(tot["n"], 1)
        return {
            "val/top1": 100.0 * tot["top1"] / n,
            "val/top5": 100.0 * tot["top5"] / n,
            "val/clip_loss": tot["clip_loss"] / n,
            "val/loss_spatial": tot["spatial_sum"] / max(tot["spatial_frames"], 1),
        }

    @torch.no_grad()
    def render_overlays(self, epoch: int) -> dict[str, tuple[np.ndarray, str]]:
        """Overlay strips of the fixed clips, written under ``overlays/`` and returned."""
        oc = self.cfg.track.overlays
        if not self.overlay_clips or epoch % oc.every and epoch != self.cfg.train.epochs:
            return {}
        val = self.data.val
        batch = {
            k: torch.stack([val[i][k] for i in self.overlay_clips])
            for k in ("video", "label", "mask", "frame_valid")
        }
        r = eval_step(self.model, batch, self.weights, amp=self.amp)
        probs = r["logits"].softmax(-1).cpu()
        names = self.data.class_names
        images = {}
        for j, i in enumerate(self.overlay_clips):
            frames, mask = val.clip(i)
            true, pred = names[int(val.labels[i])], names[int(probs[j].argmax())]
            img = render_overlay(
                frames.numpy(),
                r["attn"][j].cpu().numpy(),
                mask.numpy(),
                true,
                pred,
                float(probs[j].max()),
                cell_px=oc.cell_px,
            )
            key = f"overlay/{val.video_ids[i]}"
            path = overlay_path(self.run_dir, key, epoch)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path, compress_level=1)  # fast; the trackers re-encode
            images[key] = (img, f"epoch {epoch}: true {true}, pred {pred}")
        return images

    def run(self, until_epoch: int | None = None) -> RunResult:
        cfg = self.cfg
        last_epoch = min(cfg.train.epochs, until_epoch or cfg.train.epochs)
        with Progress(*progress_columns(), console=self.console, transient=True) as progress:
            for epoch in range(self.start_epoch + 1, last_epoch + 1):
                t0 = time.perf_counter()
                record = {"epoch": epoch, **self.train_epoch(epoch, progress)}
                record.update(self.evaluate(progress))
                seconds = time.perf_counter() - t0
                record["time/epoch_s"] = seconds
                record["time/clips_per_s"] = len(self.data.train) / seconds
                record["guidance/frac_frames"] = self.data.guided_frame_fraction
                images = self.render_overlays(epoch)
                self.history.append(record)
                improved = self.best is None or record["val/top1"] > self.best["val/top1"]
                if improved:
                    self.best = record
                # checkpoint first, then the log: the checkpoint carries the history, so a
                # crash in between loses nothing (resume fills the gap from it)
                state = self.state(epoch)
                save_checkpoint(self.ckpt_dir / "last.pt", state)
                if improved:
                    save_checkpoint(self.ckpt_dir / "best.pt", state)
                self.tracker.log_epoch(record, images)
                self.console.print(
                    f"epoch {epoch:>3}/{cfg.train.epochs}  loss {record['loss/total']:.4f} "
                    f"(ce {record['loss/ce']:.4f}, spatial {record['loss/spatial']:.4f}, "
                    f"temporal {record['loss/temporal']:.4f})  val top1 "
                    f"{record['val/top1']:.2f}  top5 {record['val/top5']:.2f}  "
                    f"clip loss {record['val/clip_loss']:.4f}  {seconds:.1f}s"
                )
                if self.on_epoch is not None:
                    self.on_epoch(record)
        if last_epoch < cfg.train.epochs:
            self.tracker.finish("KILLED")
            self.console.print(
                f"[yellow]stopped after epoch {last_epoch}/{cfg.train.epochs}[/]; continue "
                f"with: rsexp resume {self.run_dir}"
            )
            return RunResult(
                self.run_dir, {"status": "stopped", "epoch": last_epoch}, self.history
            )
        summary = self.write_summary("finished")
        figure = loss_dynamics(
            self.history,
            self.run_dir / "figures" / "loss_dynamics.png",
            f"{cfg.model.name} ({cfg.method}) on {cfg.data.name}",
        )
        self.tracker.log_artifact(figure, "figures")
        self.tracker.log_artifact(self.run_dir / SUMMARY_FILE)
        if cfg.track.mlflow.log_checkpoints or cfg.track.wandb.log_checkpoints:
            for name in ("last.pt", "best.pt"):
                self.tracker.log_artifact(self.ckpt_dir / name, "checkpoints")
        self.tracker.finish("FINISHED")
        self.console.print(
            f"[green]done[/]: val top1 {summary['val/top1']:.2f} (best "
            f"{summary['best/val/top1']:.2f} at epoch {summary['best_epoch']}) | wrote "
            f"{self.run_dir}/{{{CONFIG_FILE}, {METRICS_FILE}, {SUMMARY_FILE}, "
            f"checkpoints/, overlays/, figures/loss_dynamics.png}}"
        )
        return RunResult(self.run_dir, summary, self.history)

    def write_summary(self, status: str, error: str | None = None) -> dict:
        last = self.history[-1] if self.history else {}
        summary = {
            "status": status,
            "run_id": self.run_dir.name,
            "experiment": self.cfg.experiment,
            "dataset": self.cfg.data.name,
            "model": self.cfg.model.name,
            "method": self.cfg.method,
            "seed": self.cfg.train.seed,
            "num_params": getattr(self, "num_params", None),
            "epochs": len(self.history),
            "trackers": self.tracker.run_ids,
            **{k: v for k, v in last.items() if k != "epoch"},
        }
        if self.best is not None:
            summary["best_epoch"] = self.best["epoch"]
            summary.update({f"best/{k}": v for k, v in self.best.items() if k.startswith("val/")})
        if error:
            summary["error"] = error
        write_json_atomic(self.run_dir / SUMMARY_FILE, summary)
        return summary


@contextmanager
def deferred_interrupts():
    """Hold Ctrl-C / SIGTERM until the block ends, then raise KeyboardInterrupt.

    Wraps one optimiser step with its bookkeeping (loss sums, step count): an interrupt
    inside ``optimizer.step()`` would otherwise leave a checkpoint holding weights
    updated by a batch that is counted as not done, and the resumed run would train on
    that batch twice.
    """
    if not threading_is_main():
        yield
        return
    held: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: held.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if held:
        raise KeyboardInterrupt


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def _execute(exp: Experiment, until_epoch: int | None) -> RunResult:
    """Run with failures recorded: FAILED for a non-finite loss, KILLED for Ctrl-C/SIGTERM."""
    previous = signal.getsignal(signal.SIGTERM)
    in_main = threading_is_main()
    if in_main:  # pre-emption (SIGTERM) takes the Ctrl-C path: checkpoint, KILLED, resume
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        return exp.run(until_epoch)
    except NonFiniteLossError as e:
        exp.write_summary("failed", str(e))
        exp.tracker.finish("FAILED")
        raise
    except StopRun as e:
        exp.write_summary("stopped", str(e))
        exp.tracker.finish("KILLED")
        raise
    except KeyboardInterrupt as e:
        exp.tracker.finish("KILLED")
        exp.console.print(
            f"[yellow]{e or 'interrupted'}[/]; checkpointed. Continue with: "
            f"rsexp resume {exp.run_dir}"
        )
        raise Interrupted(str(e)) from None
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def train(
    cfg: Config,
    *,
    run_dir: str | Path | None = None,
    until_epoch: int | None = None,
    console: Console | None = None,
    on_epoch=None,
) -> RunResult:
    """Train ``cfg`` in a new run folder (``runs/<experiment>/<run_id>/`` by default)."""
    if run_dir is None:
        run_dir = Path(cfg.train.runs_dir) / cfg.experiment / new_run_id(cfg)
    run_dir = Path(run_dir)
    if (run_dir / "checkpoints" / "last.pt").exists():
        raise FileExistsError(f"{run_dir} already holds a run; use rsexp resume {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / CONFIG_FILE)
    exp = Experiment(cfg, run_dir, console, on_epoch)
    exp.start_tracking()
    exp.setup()
    exp.announce(resumed=False)
    exp.log_params()
    return _execute(exp, until_epoch)


def resume(
    run: str | Path,
    *,
    until_epoch: int | None = None,
    epochs: int | None = None,
    runs_dir: str | Path = "runs",
    console: Console | None = None,
    on_epoch=None,
) -> RunResult:
    """Continue a run from its last checkpoint, in the same tracked runs.

    ``epochs`` extends the schedule. Each backend is first given the epochs it lacks.
    """
    run_dir = find_run_dir(run, runs_dir)
    cfg = from_dict(load_yaml(run_dir / CONFIG_FILE))
    if epochs is not None:
        cfg = replace(cfg, train=replace(cfg.train, epochs=epochs))
        save_config(cfg, run_dir / CONFIG_FILE)
    exp = Experiment(cfg, run_dir, console, on_epoch)
    exp.start_tracking()
    exp.setup()
    ckpt = run_dir / "checkpoints" / "last.pt"
    if ckpt.is_file():
        exp.load_state(load_checkpoint(ckpt, map_location=exp.device))
        if epochs is not None:  # a longer schedule: recompute its step counts
            exp.total_steps = exp.steps_per_epoch * cfg.train.epochs
    exp.announce(resumed=True)
    exp.log_params()
    filled = exp.tracker.sync(exp.history)
    where = (
        f" in epoch {exp.partial['epoch']} at batch {exp.partial['batches_done']}"
        if exp.partial
        else ""
    )
    exp.console.print(
        f"resuming after epoch {exp.start_epoch}{where} (step {exp.global_step})"
        + "".join(f"; {k} given epochs {v}" for k, v in filled.items() if v)
    )
    return _execute(exp, until_epoch)
