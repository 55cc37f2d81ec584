"""The sweep's section of the config: the search space and the study's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rsexp.core.settings import check as _check


@dataclass(frozen=True)
class Dimension:
    """One search dimension of ``sweep.space``: a range ``low``..``high`` (log-uniform
    with ``log``, on a grid of ``step``; integers when low, high and step are) or a set
    of ``choices``. ``allow_zero``: the sampler may also switch the term off (exactly 0;
    the switch is the Optuna param ``<name>_off``, and tables read "off")."""

    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    allow_zero: bool = False
    step: int | float | None = None
    choices: tuple[Any, ...] | None = None

    def __post_init__(self):
        ranged = self.low is not None or self.high is not None
        _check(
            (self.choices is not None) != ranged,
            "sweep.space",
            "give a range (low and high) or choices, not both",
        )
        if self.choices is not None:
            _check(len(self.choices) >= 1, "sweep.space", "choices need at least one value")
            return
        _check(self.low is not None and self.high is not None, "sweep.space", "give low and high")
        _check(self.low <= self.high, "sweep.space", f"low {self.low} > high {self.high}")
        _check(not self.log or self.low > 0, "sweep.space", "log dimensions need low > 0")
        _check(self.step is None or self.step > 0, "sweep.space", "step must be > 0")
        _check(not (self.log and self.step), "sweep.space", "log and step exclude each other")

    @property
    def integer(self) -> bool:
        """A range of integers (low, high and step, if any, are ints)."""
        ends = (self.low, self.high, *(() if self.step is None else (self.step,)))
        return self.choices is None and all(
            isinstance(v, int) and not isinstance(v, bool) for v in ends
        )


def paper_space() -> dict[str, Dimension]:
    """The paper's knobs (§3: the loss weights, the temperature, the segment ratios, the
    guidance coverage), by name. The segments are parametrised so that every sample is
    valid: the immediate segment takes ``immediate`` of the clip at one end, and the
    centred contextual segment ``context_share`` of what is left between the two ends:
    contextual = context_share * (1 - 2 * immediate), so the two never overlap. Any
    other setting is a dimension by its dotted key (``optim.lr``, ``model.attn_layer``)."""
    return {
        "lambda_s": Dimension(0.1, 3.0, log=True, allow_zero=True),
        "lambda_t": Dimension(0.05, 2.0, log=True, allow_zero=True),
        "tau": Dimension(0.5, 4.0, log=True),
        "immediate": Dimension(0.1, 0.3),
        "context_share": Dimension(0.6, 1.0),
        "coverage": Dimension(1.0, 1.0),
    }


@dataclass(frozen=True)
class SlurmConfig:
    """How ``--launcher slurm`` asks Slurm for each job (a sweep worker, a confirmation
    or paper run), through submitit; "" leaves a setting to the cluster's default."""

    partition: str = ""
    time: int = 240  # minutes per job (--time); one that runs out is resubmitted
    gpus_per_worker: int = 1  # --gpus-per-node; sweep.nproc > 1 asks for that many
    cpus_per_worker: int = 8  # --cpus-per-task (DataLoader workers and decoding)
    mem_gb: float = 32.0  # --mem
    account: str = ""
    qos: str = ""
    # any other sbatch option, by its long name without dashes: {constraint: a100}
    extra: dict[str, str] = field(default_factory=dict)
    # failed, pre-empted or timed-out jobs replaced per command while budget remains
    resubmits: int = 4
    # SQLite is a file on the submitting machine; the nodes need a database server.
    # True: every node sees that file on a shared disk (a one-node test cluster).
    allow_sqlite: bool = False

    def __post_init__(self):
        _check(self.time >= 1, "sweep.slurm.time", "minutes, must be >= 1")
        _check(self.gpus_per_worker >= 0, "sweep.slurm.gpus_per_worker", "must be >= 0")
        _check(self.cpus_per_worker >= 1, "sweep.slurm.cpus_per_worker", "must be >= 1")
        _check(self.mem_gb > 0, "sweep.slurm.mem_gb", "must be > 0")
        _check(self.resubmits >= 0, "sweep.slurm.resubmits", "must be >= 0")


@dataclass(frozen=True)
class SweepConfig:
    objective: str = "val/top1"
    direction: Literal["maximize", "minimize"] = "maximize"
    trials: int = 6  # total budget, across restarts and workers
    epochs: int = 0  # epochs per trial; 0 = train.epochs
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"
    seed: int = 0
    confirm_seeds: tuple[int, ...] = (0, 1, 2)
    ablation_seeds: tuple[int, ...] = (0,)
    # Optuna heartbeats (RDB storage): a trial silent for grace_period s is failed and
    # re-run, continuing its tracked run from the last checkpoint.
    heartbeat_interval: int = 10
    grace_period: int = 30
    # A storage call that meets a database outage (a PostgreSQL restart, a dropped
    # connection) is retried for this long, then the sweep stops naming the cause.
    storage_retry_s: float = 120.0
    # Stop the sweep when this many trials in a row fail with the same error (a bug or a
    # data problem, not a bad region of the search space); 0 = never.
    stop_after_failures: int = 3
    # The GPU each sweep worker (and each confirmation / paper run) on this machine uses,
    # given to it as CUDA_VISIBLE_DEVICES: "auto" = one visible GPU per worker (more
    # workers than GPUs is an error: cards are shared only on purpose), nothing on a CPU
    # machine; "cpu" = hide the GPUs; "0,1,1" = these ids, one per worker in order.
    devices: str = "auto"
    # Processes (GPUs) per trial: > 1 trains each trial with DDP under torchrun
    # (rsexp.sweep.ddp_trial; rank 0 reports to Optuna and the pruner's decision is
    # broadcast). Confirmation runs stay one process each.
    nproc: int = 1
    # --launcher slurm: each worker (and each confirmation run) is a Slurm job
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    # the search space: the paper's knobs by name, any other setting by its dotted key
    space: dict[str, Dimension] = field(default_factory=paper_space)

    def __post_init__(self):
        _check(self.trials >= 1, "sweep.trials", "must be >= 1")
        _check(self.epochs >= 0, "sweep.epochs", "must be >= 0")
        _check(len(self.confirm_seeds) >= 1, "sweep.confirm_seeds", "needs at least one seed")
        _check(self.stop_after_failures >= 0, "sweep.stop_after_failures", "must be >= 0")
        _check(self.nproc >= 1, "sweep.nproc", "must be >= 1")
