"""A sweep worker: takes trials from the study until the budget is used; one trial is
one tracked experiment (``rsexp sweep`` starts these as ``rsexp sweep-worker``)."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState
from rich.console import Console

from rsexp.config import Config, load_plugins, with_values
from rsexp.experiment import RunDir, StopRun, run_or_resume
from rsexp.experiment.interrupts import deferred_interrupts
from rsexp.sweep import space as sp
from rsexp.sweep.common import (
    PARENT_ATTR,
    STOPPED_ATTR,
    SweepPaths,
    sweep_paths,
    tagged,
    trial_epochs,
)
from rsexp.sweep.study import budget_used, counts, make_storage, open_study, retry_of


class Objective:
    """One trial = one tracked experiment; ``val/top1`` (or the configured objective) of
    the last epoch is the value. The trial's config is :func:`rsexp.sweep.space.suggest`
    of the sweep's base config (plus the trial's epochs and tags), typed all the way to
    the run. An invalid sampled config, a non-finite loss or any other failure is
    recorded on the trial (``fail_reason``) and propagates: Optuna marks the trial FAIL;
    it is never scored."""

    def __init__(
        self,
        base: Config,
        study_name: str,
        paths: SweepPaths,
        parent: str | None,
        console: Console,
        storage_url: str = "",
    ):
        self.base, self.study_name, self.paths, self.parent = base, study_name, paths, parent
        self.console, self.storage_url = console, storage_url

    def config(self, values: dict, number: int) -> Config:
        """Trial ``number``'s config: the base with the sampled ``values``, the sweep's
        epochs per trial, its tags."""
        cfg = with_values(sp.apply(self.base, values), {"train.epochs": trial_epochs(self.base)})
        return tagged(cfg, self.study_name, "trial", self.parent, trial=str(number))

    def __call__(self, trial: optuna.Trial) -> float:
        # Storage writes finish whole: a Ctrl-C inside SQLAlchemy could leave the
        # connection pool locked, and the trial could then never be marked.
        with deferred_interrupts():
            run_dir, values = self._start(trial)

        def report(record: dict) -> None:
            with deferred_interrupts():
                trial.report(record[self.base.sweep.objective], record["epoch"])
                prune = trial.should_prune()
            if prune:
                raise StopRun(f"pruned at epoch {record['epoch']}")

        try:
            cfg = self.config(values, trial.number)  # one the run refuses: a FAIL
            if self.base.sweep.nproc > 1:
                summary = self._distributed(trial, run_dir, cfg)
            else:
                summary = run_or_resume(
                    cfg, run_dir, console=Console(file=io.StringIO()), on_epoch=report
                ).summary
        except StopRun as e:
            self._link(trial, run_dir)
            raise optuna.TrialPruned(str(e)) from None
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        except Exception as e:  # recorded on the trial; Optuna marks it FAIL
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {e}"[:1000])
            self._link(trial, run_dir)
            raise
        self._link(trial, run_dir)
        return float(summary[self.base.sweep.objective])

    def _distributed(self, trial: optuna.Trial, run_dir: Path, cfg: Config) -> dict:
        """The trial on ``sweep.nproc`` processes (torchrun, :mod:`rsexp.sweep.ddp_trial`):
        its config goes to the run folder's ``config.yaml``, which every rank loads; its
        output to ``<run folder>/torchrun.log``. Returns the run's summary."""
        from rsexp.jobs import Job
        from rsexp.sweep.ddp_trial import PRUNED, command

        rd = RunDir(run_dir)
        if not rd.has_checkpoint():
            rd.save_config(cfg)
        cmd = command(self.base.sweep.nproc, self.study_name, self.storage_url,
                      trial._trial_id, str(run_dir))  # fmt: skip
        job = Job.command(cmd, name=f"trial {trial.number}", log=run_dir / "torchrun.log")
        try:
            rc = job.wait()
        except KeyboardInterrupt:  # passed on once; the ranks checkpoint and stop
            job.interrupt()
            job.wait()
            raise
        summary = rd.summary() or {}
        if rc == PRUNED:
            raise StopRun(summary.get("error") or "pruned")
        if rc == 130:
            raise KeyboardInterrupt("distributed trial interrupted")
        if rc != 0 or summary.get("status") != "finished":
            why = summary.get("error") or f"torchrun exited with {rc}"
            raise RuntimeError(f"{why} (log: {run_dir / 'torchrun.log'})")
        return summary

    def _start(self, trial: optuna.Trial) -> tuple[Path, dict]:
        """Sample the trial's values and link it to its run folder. A re-run (of a trial
        whose worker died, or that Ctrl-C ended) inherits that trial's user attributes,
        run_dir among them: it continues that run."""
        study = trial.study
        previous = trial.user_attrs.get("run_dir")
        if previous is None and self._is_surplus(study, trial.number):
            trial.set_user_attr("surplus", True)
            study.stop()
            raise optuna.TrialPruned("trial budget already used by other workers")
        values = sp.sample(trial, self.base.sweep.space)
        if previous is None and (dup := duplicate_of(study, trial)) is not None:
            # the budget is spent on distinct values: this one does not count, and the
            # worker draws again (a space with fewer points than the budget is exhausted
            # once DUPLICATES_EXHAUSTED draws in a row repeat; then repeats train)
            trial.set_user_attr("duplicate_of", dup)
            raise optuna.TrialPruned(f"drew the values of trial {dup}; drawing again")
        trial.set_user_attr("values", values)
        run_dir = Path(previous) if previous else self.paths.trial(trial.number)
        if previous:
            self.console.print(f"trial {trial.number}: continuing {run_dir}")
        trial.set_user_attr("run_dir", str(run_dir))
        if job := slurm_job():  # which job ran it (its log, sacct), under --launcher slurm
            trial.set_user_attr("slurm_job", job)
        return run_dir, values

    def _is_surplus(self, study: optuna.Study, number: int) -> bool:
        trials = [t for t in study.get_trials(deepcopy=False) if t.number < number]
        return len(counts(trials)) >= self.base.sweep.trials

    @staticmethod
    def _link(trial: optuna.Trial, run_dir: Path) -> None:
        for backend, run_id in RunDir(run_dir).tracker_ids().items():
            trial.set_user_attr(f"{backend}_run_id", run_id)


def slurm_job() -> str | None:
    """This process's Slurm job as sacct and submitit's logs name it (``<array>_<task>``
    in a job array); None outside Slurm."""
    env = os.environ
    if "SLURM_ARRAY_JOB_ID" in env:
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


DUPLICATES_EXHAUSTED = 20


def duplicate_of(study: optuna.Study, trial: optuna.Trial) -> int | None:
    """The number of an earlier trial with exactly this trial's params (a re-run of the
    same trial aside), unless the space looks exhausted (the last
    ``DUPLICATES_EXHAUSTED`` trials were all duplicates)."""
    trials = study.get_trials(deepcopy=False)
    mine = next(t for t in trials if t.number == trial.number)
    recent = [t for t in trials if t.number < trial.number][-DUPLICATES_EXHAUSTED:]
    if len(recent) == DUPLICATES_EXHAUSTED and all(
        t.user_attrs.get("duplicate_of") is not None for t in recent
    ):
        return None
    related = {retry_of(mine)} | {t.number for t in trials if retry_of(t) == trial.number}
    for t in trials:
        if (
            t.number != trial.number
            and t.number not in related
            and t.params == mine.params
            and t.state != TrialState.WAITING
            and t.user_attrs.get("duplicate_of") is None
            and not t.user_attrs.get("surplus")
        ):
            return t.number
    return None


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def same_failures(study: optuna.Study, k: int) -> str | None:
    """The reason, when the last ``k`` finished trials all failed with the same one (the
    same error with other numbers in it, e.g. each trial's own sampled value, is the
    same one)."""
    done = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and t.datetime_complete is not None
    ]
    done.sort(key=lambda t: t.datetime_complete)
    last = done[-k:]
    if k < 1 or len(last) < k or any(t.state != TrialState.FAIL for t in last):
        return None
    reasons = [t.user_attrs.get("fail_reason") for t in last]
    if None in reasons or len({_NUMBER.sub("#", r) for r in reasons}) != 1:
        return None
    return reasons[-1]


def waiting(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def run_worker(
    cfg: Config, study_name: str, storage_url: str, console: Console | None = None
) -> None:
    """One worker: take trials from the study until the budget is used, or until
    ``sweep.stop_after_failures`` trials in a row fail the same way. ``cfg``: the sweep's
    base config (the driver's, passed typed; ``rsexp sweep-worker`` loads it)."""
    console = console or Console()
    load_plugins(cfg.plugins)  # a spawned worker: the plugins its trials need
    storage = make_storage(storage_url, cfg)
    study = open_study(study_name, storage, cfg, trial_epochs(cfg))
    paths = sweep_paths(cfg, study_name)
    parent = study.user_attrs.get(PARENT_ATTR)
    objective = Objective(cfg, study_name, paths, parent, console, storage_url)
    k = cfg.sweep.stop_after_failures

    def stop_when_done(study: optuna.Study, _trial) -> None:
        if study.user_attrs.get(STOPPED_ATTR):
            study.stop()
        elif k and (reason := same_failures(study, k)) is not None:
            study.set_user_attr(STOPPED_ATTR, f"the last {k} trials failed with: {reason}")
            study.stop()
        elif budget_used(study) >= cfg.sweep.trials and not waiting(study):
            study.stop()

    fail_stale_trials(study)  # a dead worker's trial is failed and queued for a re-run
    if study.user_attrs.get(STOPPED_ATTR):
        return
    if budget_used(study) >= cfg.sweep.trials and not waiting(study):
        return
    study.optimize(objective, catch=(Exception,), callbacks=[stop_when_done])
