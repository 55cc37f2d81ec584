"""One sweep trial on several processes (``sweep.nproc`` > 1): the worker starts this
module under torchrun; every rank trains the trial's run (DDP,
:mod:`rsexp.experiment.distributed`), rank 0 reports each epoch to Optuna and asks the
pruner, and the decision is broadcast so that every rank stops at the same epoch.

Exit status: 0 finished, :data:`PRUNED` pruned, 130 interrupted (checkpointed), other
values failed (the run's ``summary.json`` says why).
"""

from __future__ import annotations

import argparse
import io
import sys

from rich.console import Console

PRUNED = 3


def command(nproc: int, study: str, storage: str, trial_id: int, run_dir: str) -> list[str]:
    """The torchrun command line of one distributed trial (its config is the run
    folder's ``config.yaml``, written by the worker)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "rsexp.sweep.ddp_trial",
        "--study",
        study,
        "--storage",
        storage,
        "--trial-id",
        str(trial_id),
        "--run-dir",
        run_dir,
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--study", required=True)
    p.add_argument("--storage", required=True)
    p.add_argument("--trial-id", type=int, required=True)
    p.add_argument("--run-dir", required=True)
    args = p.parse_args(argv)

    import optuna

    from rsexp.experiment import Interrupted, RunDir, StopRun, distributed, run_or_resume
    from rsexp.experiment.interrupts import deferred_interrupts
    from rsexp.sweep.common import trial_epochs
    from rsexp.sweep.study import make_storage, open_study

    cfg = RunDir(args.run_dir).config()  # the trial's, with the sweep's own settings
    d = distributed.from_env()
    trial = None
    if d.is_main:  # the study with the sweep's own pruner (its config came with the run's)
        storage = make_storage(args.storage, cfg)
        study = open_study(args.study, storage, cfg, trial_epochs(cfg))
        trial = optuna.trial.Trial(study, args.trial_id)

    def report(record: dict) -> None:
        prune = False
        if trial is not None:
            with deferred_interrupts():
                trial.report(record[cfg.sweep.objective], record["epoch"])
                prune = trial.should_prune()
        if distributed.broadcast(prune, d):  # every rank stops at the same epoch
            raise StopRun(f"pruned at epoch {record['epoch']}")

    try:
        run_or_resume(cfg, args.run_dir, console=Console(file=io.StringIO()), on_epoch=report)
    except StopRun:
        return PRUNED
    except Interrupted:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
