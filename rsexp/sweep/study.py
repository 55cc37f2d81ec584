"""Study, storage, sampler and pruner; the trial budget shared by restarts and workers."""

from __future__ import annotations

import functools
import time
import warnings
from datetime import datetime
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from rsexp.config import Config
from rsexp.errors import StorageError  # noqa: F401 (raised here)
from rsexp.report.studies import damaged, shown_url, storage_url  # noqa: F401 (re-exported)

_log = optuna.logging.get_logger("optuna.rsexp")
# heartbeats, the retry callback and TPE's `group` are marked experimental in Optuna 5
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def default_storage(cfg: Config) -> str:
    path = Path(cfg.train.runs_dir).resolve() / cfg.experiment / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _transient(e: BaseException) -> bool:
    """A database that is restarting or unreachable (the connection refused, dropped or
    invalidated, a locked SQLite file), as opposed to a bad query or bad data. Optuna
    re-raises SQLAlchemy's errors from a commit as ``StorageInternalError`` ("invalid
    data in the commit"): the cause decides. A ``PendingRollbackError`` is a session whose
    connection broke earlier in the same call (Optuna's ``_get_trials`` catches the
    dropped connection and falls back to a second query on the dead transaction): the
    call is retried on a fresh session like the first error would have been."""
    if isinstance(e, optuna.exceptions.StorageInternalError) and e.__cause__ is not None:
        e = e.__cause__
    if isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated:
        return True
    return isinstance(
        e,
        (
            sqlalchemy.exc.OperationalError,
            sqlalchemy.exc.InterfaceError,
            sqlalchemy.exc.PendingRollbackError,
        ),
    )


class ResilientRDBStorage(RDBStorage):
    """Optuna's RDB storage whose every call survives a transient database outage (a
    PostgreSQL restart, a dropped connection): it is retried with backoff for up to
    ``retry_s`` seconds, each time on a fresh connection (``pool_pre_ping`` drops dead
    ones), then fails with :class:`StorageError` naming the storage and the real cause.
    A worker's trial, its heartbeat and its per-epoch reports wait out the outage and
    are stored when the database is back.

    A write whose commit reached the database before the connection broke is not
    applied twice where that matters: a trial state set again that the trial already
    has is success. (A new trial whose creation is lost that way stays RUNNING without
    a heartbeat and is failed as stale, as a dead worker's would be.)
    """

    def __init__(self, url: str, *args, retry_s: float = 120.0, **kwargs):
        self.retry_s = retry_s
        self.shown = shown_url(url)
        super().__init__(url, *args, **kwargs)

    def _retried(self, name: str, call, *args, **kwargs):
        start = time.monotonic()
        deadline, delay, outage = start + self.retry_s, 0.5, None
        while True:
            try:
                result = call(*args, **kwargs)
                if outage is not None:
                    _log.warning(f"storage {self.shown} is back after "
                                 f"{time.monotonic() - start:.1f} s ({name})")  # fmt: skip
                return result
            except optuna.exceptions.UpdateFinishedTrialError:
                if outage is not None and name == "set_trial_state_values":
                    trial_id, state = args[0], args[1]
                    if self.get_trial(trial_id).state == state:  # the first commit took
                        return True
                raise
            except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
                cause = e.__cause__ if e.__cause__ is not None else e
                if isinstance(cause, sqlalchemy.exc.DatabaseError) and not _transient(e):
                    raise damaged(self.url, cause) from None
                if not _transient(e):
                    raise
                if outage is None:
                    _log.warning(
                        f"storage {self.shown} unreachable ({name}: "
                        f"{str(e.__cause__ or e).strip().splitlines()[0][:200]}); retrying "
                        f"for up to {self.retry_s:g} s"
                    )
                outage = e.__cause__ or e
                if time.monotonic() >= deadline:
                    raise StorageError(
                        f"--storage {self.shown}: the database did not answer for "
                        f"{self.retry_s:g} s (sweep.storage_retry_s): "
                        f"{type(outage).__name__}: {str(outage).strip()[:300]}"
                    ) from e
                self.engine.dispose()  # reconnect: every pooled connection may be dead
                time.sleep(delay)
                delay = min(delay * 2, 8.0)


def _resilient(name: str):
    def method(self, *args, **kwargs):
        return self._retried(name, getattr(RDBStorage, name).__get__(self), *args, **kwargs)

    method.__name__ = name
    method.__doc__ = getattr(RDBStorage, name).__doc__
    return method


# every storage call Optuna makes: the public ones, the heartbeat, and the private ones
# its cache layer (_CachedStorage, which wraps every RDBStorage) calls directly
_PRIVATE = ("_get_stale_trial_ids", "_get_trials", "_create_new_trial", "_get_best_trial_id",
            "_set_trial_param")  # fmt: skip
_NOT_DB = (
    "remove_session",
    "upgrade",
    "get_current_version",
    "get_head_version",
    "get_all_versions",
    "get_heartbeat_interval",
    "get_heartbeat_stale_trial_callback",
)
for _name in [
    n
    for n, v in vars(RDBStorage).items()
    if callable(v) and (not n.startswith("_") or n in _PRIVATE) and n not in _NOT_DB
]:  # fmt: skip
    setattr(ResilientRDBStorage, _name, _resilient(_name))


def _claim(storage: RDBStorage, trial_id: int, state: TrialState) -> bool:
    """WAITING -> RUNNING as one conditional UPDATE: True for the one caller that moved
    it. Optuna reads the state, then writes it (``SELECT ... FOR UPDATE``), which SQLite
    does not lock: two workers popping the queue at once both took the same trial (seen
    in CI: two drivers of one study ran trial 0 twice, and one failed it). ``state`` is
    always RUNNING (the signature of the call it stands in for)."""
    # Optuna's own table model and session scope (private names, pinned by the tests)
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    trial = models.TrialModel
    with _create_scoped_session(storage.scoped_session) as session:
        moved = (
            session.query(trial)
            .filter(trial.trial_id == trial_id, trial.state == TrialState.WAITING)
            .update({trial.state: TrialState.RUNNING}, synchronize_session=False)
        )
        if moved == 1:  # the same transaction: this worker holds the write
            session.get(trial, trial_id).datetime_start = datetime.now()
    if moved == 1:
        return True
    # as Optuna's: a finished trial raises, one another worker runs is not ours
    storage.check_trial_is_updatable(trial_id, storage.get_trial(trial_id).state)
    return False


def _set_trial_state_values(self, trial_id, state, values=None) -> bool:
    if state == TrialState.RUNNING and values is None:  # popping the queue
        claim = functools.partial(_claim, self)
        return self._retried("set_trial_state_values", claim, trial_id, state)
    base = RDBStorage.set_trial_state_values.__get__(self)
    return self._retried("set_trial_state_values", base, trial_id, state, values)


_set_trial_state_values.__doc__ = RDBStorage.set_trial_state_values.__doc__
ResilientRDBStorage.set_trial_state_values = _set_trial_state_values


def make_storage(url: str, cfg: Config) -> RDBStorage:
    """RDB storage with heartbeats: a worker that dies leaves a stale trial, which the
    next worker to start a trial fails and re-queues (``RetryHeartbeatStaleTrialCallback``);
    every call survives a transient database outage (:class:`ResilientRDBStorage`)."""
    url = storage_url(url)
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:  # a connection that died with a server restart is replaced, not used
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    try:
        return _rdb(url, engine_kwargs, cfg)
    except ImportError as e:
        raise StorageError(
            f"--storage {shown_url(url)}: the database driver is not installed ({e.name}); "
            f"pip install {'psycopg2-binary' if 'psycopg' in str(e.name) else e.name}"
        ) from e
    except sqlalchemy.exc.OperationalError as e:
        raise StorageError(f"--storage {shown_url(url)}: cannot connect: {e.orig}") from e
    except sqlalchemy.exc.DatabaseError as e:  # a damaged file: not something to retry
        raise damaged(url, e) from None


def _rdb(url: str, engine_kwargs: dict, cfg: Config) -> RDBStorage:
    return ResilientRDBStorage(
        url,
        retry_s=cfg.sweep.storage_retry_s,
        engine_kwargs=engine_kwargs,
        heartbeat_interval=cfg.sweep.heartbeat_interval,
        grace_period=cfg.sweep.grace_period,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
    )


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial ``number`` of a sweep seeded ``seed``."""
    return (seed * 1_000_003 + number * 7_919 + 17) % 2**31


class _PerTrialSeed:
    """A sampler whose random draws for a trial are seeded by ``sweep.seed`` and the
    trial's number, not by the worker: parallel workers (each a sampler of its own, all
    built from the same ``sweep.seed``) would otherwise draw the same start-up knobs
    (the embedded sweep ran trial 3 with trial 1's knobs; 4 random workers duplicated 45
    of 60 trials). Trial numbers are unique in a study, so are the draws; a study is
    reproducible for a given seed, whatever the number of workers, wherever its
    suggestions depend on the draws alone."""

    def before_trial(self, study, trial) -> None:
        seed = trial_seed(self._sweep_seed, trial.number)
        self._rng.rng.seed(seed)
        for inner in self._inner_random():
            inner._rng.rng.seed(seed + 1)
        super().before_trial(study, trial)

    def _inner_random(self) -> list:
        return []


class SweepRandomSampler(_PerTrialSeed, optuna.samplers.RandomSampler):
    def __init__(self, seed: int):
        super().__init__(seed=seed)
        self._sweep_seed = seed


class SweepTPESampler(_PerTrialSeed, optuna.samplers.TPESampler):
    def __init__(self, seed: int, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self._sweep_seed = seed

    def _inner_random(self) -> list:
        return [self._random_sampler]  # TPE's start-up trials draw from it


def make_sampler(cfg: Config) -> optuna.samplers.BaseSampler:
    if cfg.sweep.sampler == "random":
        return SweepRandomSampler(seed=cfg.sweep.seed)
    # Optuna 5's TPE is multivariate by default; group=True handles the conditional
    # "<knob>_off" switches; constant_liar keeps parallel workers from sampling alike.
    return SweepTPESampler(
        seed=cfg.sweep.seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=3
    )


def make_pruner(cfg: Config, epochs: int) -> optuna.pruners.BasePruner:
    if cfg.sweep.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=max(1, epochs // 2))
    if cfg.sweep.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, epochs // 4), max_resource=epochs
        )
    return optuna.pruners.NopPruner()


def open_study(name: str, storage: RDBStorage, cfg: Config, epochs: int) -> optuna.Study:
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(cfg),
        pruner=make_pruner(cfg, epochs),
        direction=cfg.sweep.direction,
        load_if_exists=True,
    )
    if study.metric_names != [cfg.sweep.objective]:  # optuna-dashboard and the plots say it
        study.set_metric_names([cfg.sweep.objective])
    if "optuna_version" not in study.user_attrs:
        study.set_user_attr("optuna_version", optuna.__version__)
        study.set_user_attr(
            "sampler",
            {
                "name": cfg.sweep.sampler,
                "seed": cfg.sweep.seed,
                "multivariate": True,
                "group": True,
                "constant_liar": True,
                "n_startup_trials": 3,
                # each trial's draws: trial_seed(seed, trial number), whichever worker
                "seeds": "per trial: (seed * 1000003 + number * 7919 + 17) mod 2^31",
            },
        )
        study.set_user_attr("pruner", cfg.sweep.pruner)
        study.set_user_attr("objective", cfg.sweep.objective)
        study.set_user_attr("budget", cfg.sweep.trials)
    return study


def retry_of(trial: FrozenTrial) -> int | None:
    """The number of the trial this one re-runs (a dead worker's or an interrupted one)."""
    n = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    return n if n is not None else trial.user_attrs.get("resume_of")


def counts(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the trials that use the budget: every trial except one that a later
    trial re-runs (its retry counts instead), surplus trials stopped for the budget, and
    trials that drew another trial's knobs (stopped before training, ``duplicate_of``)."""
    replaced = {r for t in trials if (r := retry_of(t)) is not None}
    return {
        t.number
        for t in trials
        if t.number not in replaced
        and not t.user_attrs.get("surplus")
        and t.user_attrs.get("duplicate_of") is None
    }


def budget_used(study: optuna.Study) -> int:
    return len(counts(study.get_trials(deepcopy=False)))


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Queue a re-run of each trial that a Ctrl-C ended (FAIL, ``interrupted``) and that
    nothing re-runs yet; the re-run resumes that trial's run from its checkpoint."""
    trials = study.get_trials(deepcopy=False)
    replaced = {r for t in trials if (r := retry_of(t)) is not None}
    queued = []
    for t in trials:
        if (
            t.state == TrialState.FAIL
            and t.user_attrs.get("interrupted")
            and t.number not in replaced
        ):
            attrs = {k: v for k, v in t.user_attrs.items() if k != "interrupted"}
            study.enqueue_trial(t.params, user_attrs={**attrs, "resume_of": t.number})
            queued.append(t.number)
    return queued
