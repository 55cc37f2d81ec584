"""One run on several processes (DistributedDataParallel): ``rsexp train --nproc N`` or
``torchrun ... -m rsexp.cli train``.

``data.batch_size`` stays the *global* batch: each of the N ranks takes every N-th clip
of each global batch (the single-process run's batches, in its order), so the averaged
gradient is the single-process one and a run's numbers do not depend on N (up to float
reduction order; the spatial term is averaged per rank over that rank's guided frames,
which equals the global mean when ranks hold equally many, as with full guidance).
Rank 0 alone keeps the run folder, the trackers, overlays and checkpoints; the other
ranks write into a private scratch folder that is removed at the end. Training means
are summed across ranks at each read of the losses (``train.log_every``), evaluation
shards the split and sums its ``(sum, count)`` pairs, so every logged number covers the
whole batch or split.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from rsexp.config import ConfigError


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (``rank`` 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> Dist:
    """The job as torchrun describes it (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(device_name: str) -> Dist:
    """Join the process group (NCCL on CUDA, gloo on CPU) when launched by torchrun; on
    CUDA each rank takes the GPU of its local rank."""
    d = from_env()
    if not d.enabled or dist.is_initialized():
        return d
    cuda = device_name != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(d.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    return d


def broadcast(obj, d: Dist):
    """Rank 0's ``obj`` on every rank."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextmanager
def main_first(d: Dist):
    """Rank 0 runs the block first (decoding the clip cache, writing guidance), then the
    others, who find it done."""
    if d.enabled and not d.is_main:
        dist.barrier()
    yield
    if d.enabled and d.is_main:
        dist.barrier()


def scratch_dir(d: Dist) -> Path:
    """Where a rank other than 0 writes what it must (removed at exit by the caller)."""
    return Path(tempfile.mkdtemp(prefix=f"rsexp-rank{d.rank}-"))


def remove_scratch(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def sum_across(values: list[float], d: Dist, device: torch.device) -> list[float]:
    """``values`` summed over the ranks (one all_reduce); the same list when alone."""
    if not d.enabled or not values:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.cpu().tolist()


def gather(obj, d: Dist) -> list:
    """Every rank's ``obj``, in rank order."""
    if not d.enabled:
        return [obj]
    out = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def rank_batches(order: list[int], batch_size: int, start: int, d: Dist) -> list[list[int]]:
    """The batches of one epoch from batch ``start`` on, as this rank sees them: every
    ``world``-th clip of each global batch of ``order``."""
    return [
        order[i : i + batch_size][d.rank :: d.world]
        for i in range(start * batch_size, len(order), batch_size)
    ]


def check_batches(num_train: int, batch_size: int, world: int) -> None:
    """Every rank must get a clip of every batch (a rank without one would wait forever
    in the gradient all_reduce)."""
    last = num_train % batch_size or batch_size
    if min(batch_size, last) < world:
        which = "the batch size is" if batch_size < world else "the last batch of an epoch has"
        raise ConfigError(
            f"data.batch_size: with {world} processes each batch needs at least {world} "
            f"clips, but {which} {min(batch_size, last)} ({num_train} training clips); "
            f"choose a batch size that leaves at least {world} clips in the last batch"
        )


def wrap(model: torch.nn.Module, d: Dist, find_unused: bool = False) -> torch.nn.Module:
    """The DDP wrapper the training step runs (the plain model everywhere else).
    ``find_unused``: some parameters get no gradient on some steps (a baseline step
    skips the level views' graph), which DDP must then look for on every step."""
    if not d.enabled:
        return model
    dev = next(model.parameters()).device
    return torch.nn.parallel.DistributedDataParallel(
        model,
        device_ids=[dev.index] if dev.type == "cuda" else None,
        find_unused_parameters=find_unused,
        broadcast_buffers=False,
    )


def finish(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, argv: list[str], torchrun_args: list[str] | None = None) -> int:
    """Run ``rsexp <argv>`` on ``nproc`` processes of this machine through torchrun
    (``torch.distributed.run``); other torchrun flags (several machines: ``--nnodes``,
    ``--node-rank``, ``--rdzv-endpoint``...) pass through ``torchrun_args``."""
    extra = list(torchrun_args or [])
    if not any(a.startswith(("--nnodes", "--rdzv", "--master")) for a in extra):
        extra.insert(0, "--standalone")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *extra,
        f"--nproc-per-node={nproc}",
        "-m",
        "rsexp.cli",
        *argv,
    ]
    from rsexp.jobs import Job

    job = Job.command(cmd, name="torchrun")  # its output on this terminal
    try:
        return job.wait()
    except KeyboardInterrupt:  # passed on once: every rank checkpoints and stops
        job.interrupt()
        return job.wait()
