"""The epoch loop of one run: train steps, evaluation, overlays, checkpoint, log.

Order at the end of an epoch (the resume relies on it): evaluate and render, then the
checkpoint (it carries the metric history), then the log. A crash between checkpoint
and log loses nothing: the resume gives each backend the epochs it lacks
(:meth:`rsexp.track.Tracker.sync`). An interrupt during training saves the batches
done so far; one during evaluation keeps the finished training pass, and the resume
starts with the evaluation.
"""

from __future__ import annotations

import os
import time

import torch
from rich.progress import Progress
from torch.utils.data import DataLoader

from rsexp.config import to_dict
from rsexp.core.checkpoint import capture_rng, restore_rng
from rsexp.core.metrics import SegmentationMeter, SumMeter
from rsexp.core.optim import lr_at
from rsexp.core.step import NonFiniteLossError, eval_step, train_step
from rsexp.experiment import distributed
from rsexp.experiment.build import RunParts
from rsexp.experiment.inputs import background_ids
from rsexp.experiment.interrupts import Interrupted, deferred_interrupts
from rsexp.experiment.readout import PendingSteps
from rsexp.experiment.reporter import Reporter
from rsexp.experiment.rundir import RunDir, write_json_atomic
from rsexp.track import Tracker
from rsexp.track.local import overlay_path, save_png
from rsexp.track.overlay import overlay_images, pick_overlay_clips, render_segmentation


class Trainer:
    """Trains ``parts`` in ``run_dir``, logging through ``tracker``.

    ``on_epoch`` is called with each finished (checkpointed, logged) epoch's record; it
    may raise :class:`~rsexp.experiment.interrupts.StopRun` (a pruned sweep trial).
    """

    def __init__(
        self,
        parts: RunParts,
        run_dir: RunDir,
        tracker: Tracker,
        reporter: Reporter,
        on_epoch=None,
    ):
        self.parts, self.cfg = parts, parts.cfg
        self.model, self.optimizer, self.data = parts.model, parts.optimizer, parts.data
        self.schedule = parts.schedule
        self.run_dir, self.tracker, self.reporter = run_dir, tracker, reporter
        self.on_epoch = on_epoch
        self.history: list[dict] = []
        self.best: dict | None = None
        self.start_epoch = 0
        self.global_step = 0
        self.partial: dict | None = None  # progress inside an interrupted epoch
        # this epoch's input-pipeline wait: all of it, the first batch's, the pass
        self.data_wait, self.data_start, self.train_pass_s = 0.0, 0.0, 0.0
        # overlays only show attention (they choose nothing): validation clips, or the
        # test clips when there is no validation split
        self.overlay_set = self.data.val if self.data.val is not None else self.data.test
        self.overlay_clips = (
            pick_overlay_clips(self.overlay_set, self.cfg.track.overlays.num_clips)
            if self.overlay_set is not None
            else []
        )
        # action segmentation: classes left out of the segment scores, and the frame-wise
        # predictions of the epoch being evaluated, by split
        self.background = background_ids(self.cfg.data.background, self.data.class_names)
        self.segmentation: dict[str, list] = {}
        # a YAML written for a big machine (num_workers=8) runs as well on a small one
        self.num_workers = min(self.cfg.data.num_workers, len(os.sched_getaffinity(0)))
        # steps between reads of the loss values from the device (train.log_every)
        self.log_every = self.cfg.train.log_every or (
            50 if self.parts.device.type == "cuda" else 1
        )
        # one run on several processes: the step runs the DDP wrapper; rank 0 alone
        # writes checkpoints and images (rsexp.experiment.distributed)
        self.dist = parts.dist
        lc = self.cfg.loss
        self.train_model = distributed.wrap(
            self.model, self.dist, find_unused=lc.lambda_t == 0 and lc.ce_on == "clip"
        )
        if self.dist.enabled:
            distributed.check_batches(
                len(self.data.train), self.cfg.data.batch_size, self.dist.world
            )

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
                "total_steps": self.schedule.total_steps,
                "warmup_steps": self.schedule.warmup_steps,
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

    def _lr(self, step: int) -> float:
        s, o = self.schedule, self.cfg.optim
        return lr_at(step, s.total_steps, s.warmup_steps, o.lr, o.min_lr_ratio)

    def _save_partial(self, epoch: int, done: int, meter: SumMeter) -> None:
        if not self.dist.is_main:
            return
        partial = {"epoch": epoch, "batches_done": done, "sums": meter.sums, "count": meter.count}
        self.run_dir.save_last(self.state(epoch - 1, partial))

    # -- one epoch
    def train_epoch(self, epoch: int, progress: Progress) -> SumMeter:
        """The training pass of ``epoch``; returns its running means. Ctrl-C saves the
        batches done so far and raises :class:`Interrupted`."""
        cfg, spe = self.cfg, self.schedule.steps_per_epoch
        self.data.train.set_epoch(epoch)
        # the order of an epoch is a function of (seed, epoch): identical after a resume,
        # which also lets an interrupted epoch skip the batches it already trained on
        gen = torch.Generator().manual_seed(cfg.train.seed * 100_003 + epoch)
        order = torch.randperm(len(self.data.train), generator=gen).tolist()
        meter, done = SumMeter(), 0
        if self.partial and self.partial["epoch"] == epoch:
            done = self.partial["batches_done"]
            meter.sums, meter.count = dict(self.partial["sums"]), dict(self.partial["count"])
        self.partial = None
        self.data_wait, self.data_start, self.train_pass_s = 0.0, 0.0, 0.0
        if done >= spe:
            return meter
        loader = DataLoader(
            self.data.train,
            # the single-process batches, in order; a rank takes every world-th clip
            batch_sampler=distributed.rank_batches(order, cfg.data.batch_size, done, self.dist),
            num_workers=self.num_workers,
            # its own generator: a DataLoader otherwise draws its worker seed from the
            # global RNG, which would shift dropout after a mid-epoch resume
            generator=torch.Generator().manual_seed(cfg.train.seed * 100_003 + epoch),
            pin_memory=self.parts.device.type == "cuda",
        )
        task = progress.add_task(
            f"epoch {epoch}/{cfg.train.epochs} train", total=spe, completed=done
        )
        # the steps' values stay on the device until read, every `log_every` steps and at
        # the end: a step never waits for the device (on CPU the check is per step and
        # free, and a non-finite loss stops before any parameter is touched)
        pending = PendingSteps(self.log_every, self.dist, self.parts.device)
        where = f"epoch {epoch}, step {{i}}/{spe}"

        def read(collective: bool = True) -> None:
            loss = pending.read(meter, where, collective)
            if loss is not None:
                desc = f"epoch {epoch}/{cfg.train.epochs} train loss {loss:.3f}"
                progress.update(task, description=desc)

        # time spent waiting for the DataLoader, against the whole training pass
        t_pass = t_ready = time.perf_counter()
        try:
            for i, batch in enumerate(loader, start=done):
                if i == done:  # the workers' start and first clips: reported apart
                    self.data_start = time.perf_counter() - t_ready
                self.data_wait += time.perf_counter() - t_ready
                lr = self._lr(self.global_step)
                with deferred_interrupts():
                    try:
                        sums = train_step(
                            self.train_model,
                            batch,
                            self.optimizer,
                            cfg.loss,
                            step=self.global_step,
                            lr=lr,
                            grad_clip=cfg.optim.grad_clip,
                            amp=self.parts.amp,
                            # several processes: the (collective) read checks, so that
                            # every rank stops at the same step
                            check_finite=self.log_every == 1 and not self.dist.enabled,
                        )
                    except NonFiniteLossError as e:
                        raise NonFiniteLossError(
                            f"non-finite loss at epoch {epoch}, step {i + 1}/{spe} "
                            f"(global step {self.global_step}): {e}"
                        ) from None
                    ready = pending.add(i, self.global_step, sums)
                    self.global_step += 1
                    if ready:
                        read()
                progress.update(task, advance=1)
                t_ready = time.perf_counter()
            read()
            self.train_pass_s = time.perf_counter() - t_pass
        except KeyboardInterrupt as e:
            # the batch in flight is dropped; the finished ones are kept, exactly (after
            # the check that none of them went non-finite: a NaN model is never saved).
            # Several processes: no collective here (another rank may be gone); steps not
            # yet read count rank 0's share in the logged means (the weights are exact)
            read(collective=False)
            done = self.global_step - (epoch - 1) * spe
            self._save_partial(epoch, done, meter)
            reason = str(e) or "interrupted"
            raise Interrupted(f"{reason} in epoch {epoch} after {done} batches") from None
        progress.remove_task(task)
        return meter

    @torch.no_grad()
    def evaluate(self, split: str = "val", progress: Progress | None = None) -> dict[str, float]:
        """``<split>/*`` over the whole ``val`` or ``test`` split, from summed counts."""
        cfg = self.cfg
        dataset, windows = self.data.eval_sets[split], self.data.eval_sets[split].windows
        if self.dist.enabled and windows is None:  # each rank a share; the sums are added
            dataset = torch.utils.data.Subset(
                dataset, range(self.dist.rank, len(dataset), self.dist.world)
            )
        loader = DataLoader(
            dataset,
            batch_size=cfg.data.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(0),
        )
        task = progress.add_task(split, total=len(loader)) if progress else None
        meter = SumMeter()
        logits = []  # window logits, for frame-wise prediction (action segmentation)
        for batch in loader:
            out = eval_step(self.model, batch, cfg.loss, amp=self.parts.amp)
            meter.add(out.sums)
            if windows is not None:
                logits.append(out.logits.cpu())
            if progress:
                progress.update(task, advance=1)
        if progress:
            progress.remove_task(task)
        if self.dist.enabled and windows is None:
            shards, meter = distributed.gather((meter.sums, meter.count), self.dist), SumMeter()
            for sums, count in shards:
                meter.add({k: (sums[k], count[k]) for k in sums})
        means = meter.means()
        means.setdefault("loss_spatial", 0.0)  # no guided frame in the split
        if windows is not None:  # top1/top5/clip_loss above are per window
            preds = windows.frame_predictions(torch.cat(logits).numpy())
            seg = SegmentationMeter(self.background)
            for pred, true in zip(preds, windows.labels, strict=True):
                seg.add(pred, true)
            means.update(seg.scores())
            self.segmentation[split] = preds
        return {f"{split}/{k}": v for k, v in means.items()}

    def segmentation_figure(self, epoch: int) -> dict:
        """The frame-wise predictions of this epoch's evaluations: each split's written
        as ``segmentation/<split>.json`` (video -> true and predicted label per frame at
        data.segmentation_fps; the last epoch's stays), and a few videos drawn as colour
        bars (test at the last epoch, else val), logged with the overlays."""
        if not self.segmentation:
            return {}
        for split, preds in self.segmentation.items():
            windows = self.data.eval_sets[split].windows
            out = self.run_dir.path / "segmentation" / f"{split}.json"
            out.parent.mkdir(exist_ok=True)
            write_json_atomic(
                out,
                {
                    k: {"true": t.tolist(), "pred": p.tolist()}
                    for k, t, p in zip(windows.keys, windows.labels, preds, strict=True)
                },
            )
        split = "test" if "test" in self.segmentation else "val"
        windows, preds = self.data.eval_sets[split].windows, self.segmentation[split]
        self.segmentation = {}
        n = min(4, len(preds))
        img = render_segmentation(
            windows.keys[:n], windows.labels[:n], preds[:n], self.data.class_names
        )
        save_png(img, overlay_path(self.run_dir.path, "overlay/segmentation", epoch))
        caption = f"epoch {epoch}: {split} videos, true (top) and predicted (bottom) per frame"
        return {"overlay/segmentation": (img, caption)}

    @torch.no_grad()
    def render_overlays(self, epoch: int) -> dict:
        """Overlay strips of the fixed clips, written under ``overlays/`` and returned."""
        oc = self.cfg.track.overlays
        if not self.overlay_clips or epoch % oc.every and epoch != self.cfg.train.epochs:
            return {}
        val = self.overlay_set
        batch = {
            k: torch.stack([val[i][k] for i in self.overlay_clips])
            for k in ("video", "label", "mask", "frame_valid")
        }
        out = eval_step(self.model, batch, self.cfg.loss, amp=self.parts.amp)
        images = overlay_images(
            val, self.overlay_clips, out.logits, out.attn, self.data.class_names, oc.cell_px
        )
        for key, (img, caption) in images.items():
            save_png(img, overlay_path(self.run_dir.path, key, epoch))
            images[key] = (
                img,
                f"epoch {epoch}: {caption}" if epoch else f"before training: {caption}",
            )
        return images

    def end_epoch(self, epoch: int, meter: SumMeter, t0: float, progress: Progress) -> dict:
        """Evaluate, render, checkpoint, log: the finished epoch's record."""
        means = meter.means()
        record = {"epoch": epoch, "loss/total": means.pop("loss"), **means}
        record.setdefault("loss/spatial", 0.0)  # no guided frame in the whole epoch
        record["lr"] = self._lr(self.global_step - 1)
        try:
            if self.data.val is not None:
                record.update(self.evaluate("val", progress))
            # the test split is evaluated once, at the end: reported, never chosen on
            if self.data.test is not None and epoch == self.cfg.train.epochs:
                record.update(self.evaluate("test", progress))
            images = {}
            if self.dist.is_main:  # images and files: rank 0 only
                images = self.render_overlays(epoch)
                images.update(self.segmentation_figure(epoch))
            self.segmentation = {}
        except KeyboardInterrupt as e:
            # keep the finished training pass: the resume starts with the evaluation
            self._save_partial(epoch, self.schedule.steps_per_epoch, meter)
            reason = str(e) or "interrupted"
            raise Interrupted(f"{reason} while evaluating epoch {epoch}") from None
        seconds = time.perf_counter() - t0
        record["time/epoch_s"] = seconds
        record["time/clips_per_s"] = len(self.data.train) / seconds
        if self.train_pass_s:  # the share of the training pass spent waiting for clips,
            # and the same once the loader is running (after its first batch)
            record["time/data_wait_frac"] = self.data_wait / self.train_pass_s
            warm = self.train_pass_s - self.data_start
            if warm > 0:
                record["time/data_wait_warm_frac"] = (self.data_wait - self.data_start) / warm
        record["guidance/frac_frames"] = self.data.guided_frame_fraction
        with deferred_interrupts():  # checkpoint and log are short: finish them whole
            self.history.append(record)
            # best = highest val/top1; without a validation split, the last epoch
            improved = (
                self.best is None
                or "val/top1" not in record
                or record["val/top1"] > self.best["val/top1"]
            )
            if improved:
                self.best = record
            if self.dist.is_main:  # best.pt first, then last.pt (RunDir.save_last)
                self.run_dir.save_last(self.state(epoch), best=improved)
            self.tracker.log_epoch(record, images)
        return record

    def run(self, until_epoch: int | None = None) -> int:
        """Train from ``start_epoch`` to ``until_epoch`` (default: the last); returns
        the last epoch trained."""
        cfg = self.cfg
        last_epoch = min(cfg.train.epochs, until_epoch or cfg.train.epochs)
        fresh = self.start_epoch == 0 and self.partial is None
        if fresh and self.dist.is_main and not self.tracker.has_images(0):
            # the attention before training, as step 0 (once: not again for a run started
            # again from nothing): a tracker's image view opens on step 0, and the slider
            # then shows the attention from where it starts
            self.tracker.log_images(self.render_overlays(0), 0)
        with self.reporter.progress() as progress:
            for epoch in range(self.start_epoch + 1, last_epoch + 1):
                t0 = time.perf_counter()
                meter = self.train_epoch(epoch, progress)
                record = self.end_epoch(epoch, meter, t0, progress)
                self.reporter.epoch(record, cfg.train.epochs)
                if self.on_epoch is not None:
                    self.on_epoch(record)
        return last_epoch

    def summary(self, status: str, error: str | None = None) -> dict:
        """``summary.json``: status, the last epoch's metrics, the best epoch's ``val/*``."""
        cfg = self.cfg
        last = self.history[-1] if self.history else {}
        summary = {
            "status": status,
            "run_id": self.run_dir.name,
            "experiment": cfg.experiment,
            "dataset": cfg.data.name,
            "model": cfg.model.name,
            "method": cfg.method,
            "seed": cfg.train.seed,
            "num_params": self.parts.num_params,
            "device": str(self.parts.device),
            "processes": self.dist.world,  # one run on several (--nproc / torchrun)
            # the GPU a sweep worker or job was given (sweep.devices), where one was
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "epochs": len(self.history),
            "trackers": self.tracker.run_ids,
            **{k: v for k, v in last.items() if k != "epoch"},
        }
        if self.best is not None:
            summary["best_epoch"] = self.best["epoch"]
            summary.update({f"best/{k}": v for k, v in self.best.items() if k.startswith("val/")})
        if error:
            summary["error"] = error
        self.run_dir.write_summary(summary)
        return summary
