"""``train``, ``resume`` and ``run_or_resume``: one setup path, one way to end a run.

Setup, in order (both entry points): run folder and config -> tracked runs (an
unreachable server fails before any work) -> :func:`~rsexp.experiment.build.build_run`
(seed, device, data, model, optimiser) -> [resume: checkpoint state, then every backend
given the epochs it lacks] -> header and params -> epochs. However a run ends, its
``summary.json`` and every tracked run say how, in one word (:class:`RunStatus`:
finished, stopped (pruned or ``--until-epoch``), killed (Ctrl-C/SIGTERM, checkpointed)
or failed, with the reason), recorded once by :mod:`rsexp.experiment.lifecycle`.
"""

from __future__ import annotations

import io
import json
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from rsexp.config import Config, ConfigError, flatten, from_dict, to_dict
from rsexp.config.scope import run_keys
from rsexp.errors import ResumeRefused
from rsexp.experiment import distributed
from rsexp.experiment.build import build_run, preflight
from rsexp.experiment.lifecycle import Outcome, recorded
from rsexp.experiment.loop import Trainer
from rsexp.experiment.reporter import Reporter
from rsexp.experiment.rundir import RunDir
from rsexp.track import RunStatus, Tracker
from rsexp.track.figures import loss_dynamics
from rsexp.track.provenance import input_digests, provenance, redact


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    history: list[dict]


def new_run_id(cfg: Config) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{cfg.model.name}-{cfg.method}-s{cfg.train.seed}-{secrets.token_hex(2)}"


def _tags(cfg: Config) -> dict[str, str]:
    return {
        "dataset": cfg.data.name,
        "model": cfg.model.name,
        "method": cfg.method,
        "seed": str(cfg.train.seed),
        **cfg.track.tags,
    }


def _digests(parts) -> dict[str, str]:
    data = parts.data
    clips = [c for ids in data.split_ids().values() for c in ids]
    return input_digests(data.digest, data.guidance_path, data.cache_dirs, clips)


def check_inputs(source: RunDir, digests: dict[str, str], accept: bool, epoch: int) -> dict:
    """A resume's inputs against the digests the run recorded when it started
    (``params.json``): changed, the resume is refused naming what changed, unless
    ``accept``: then the change is recorded as params of its own
    (``inputs.changed_after_epoch_<N>.<key>``); the recorded digests stay as they were.

    Raises:
        ResumeRefused: naming each changed input, its old and new digest.
    """
    recorded = source.params()
    names = {"guidance.digest": "the guidance file", "dataset.digest": "the dataset index",
             "cache.digest": "the decoded clip cache"}  # fmt: skip
    changed = {k: (recorded[k], v) for k, v in digests.items()
               if k in recorded and recorded[k] != v}  # fmt: skip
    if not changed:
        return {}
    what = "; ".join(f"{names.get(k, k)} ({k} {a} -> {b})" for k, (a, b) in changed.items())
    if not accept:
        raise ResumeRefused(
            f"rsexp resume {source.path}: its inputs changed since epoch {epoch} was "
            f"trained: {what}. Restore them, or continue on the new inputs with "
            f"--accept-changed-inputs (recorded as a param of the run)"
        )
    return {f"inputs.changed_after_epoch_{epoch}.{k}": b for k, (_, b) in changed.items()}


def _params(trainer: Trainer) -> dict[str, str]:
    parts = trainer.parts
    # the settings that apply to this run (a person scans them in MLflow's Parameters
    # table); the whole resolved config is the run's config.yaml, logged as an artifact
    params = run_keys({
        k: json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)
        for k, v in flatten(to_dict(parts.cfg)).items()
    })  # fmt: skip
    params.update(provenance(str(parts.device), _digests(parts)))
    params["num_params"] = str(parts.num_params)
    # which guidance source the run used (tables can compare them): from the file's
    # metadata record; a file made elsewhere has none
    store = parts.data.guidance
    params["guidance_file.annotator"] = str(store.meta.get("annotator", "external"))
    # the file's own record comes from outside the config: masked as a config is
    params["guidance_file.settings"] = json.dumps(redact(store.meta.get("settings", {})))
    params["guidance_file.frame_keys"] = f"{store.frame_keys} (K={store.positions})"
    return params


def _setup(
    cfg: Config,
    rd: RunDir,
    outcome: Outcome,
    on_epoch,
    resumed: bool,
    d: distributed.Dist,
    source: RunDir | None = None,
    accept_changed_inputs: bool = False,
) -> tuple[Trainer, dict]:
    """``rd``: where this process writes (a scratch folder on ranks other than 0);
    ``source``: the run folder a resume reads (``rd`` by default). The tracker and the
    trainer are handed to ``outcome`` as they are made."""
    source = source or rd
    reporter = outcome.reporter
    if not d.is_main:  # mirrored nowhere: rank 0 tracks
        cfg = replace(cfg, track=replace(cfg.track, backends=()))
    state = None
    if resumed and source.has_checkpoint():
        # read (and check) the checkpoint before touching any tracked run: a bad one
        # must not flip a FINISHED run back to RUNNING
        state, note = source.load_state()
        if note:
            reporter.console.print(f"[yellow]{escape(note)}[/]")
    tracker = Tracker(cfg.track, rd.path, cfg.train.runs_dir, reporter.console)
    tracker.start(rd.name, cfg.experiment, _tags(cfg))
    outcome.tracker = tracker
    parts = build_run(cfg, reporter.console, d)
    changed = {}
    if resumed:  # the inputs the trained epochs used, unchanged (or accepted as changed)
        start = state["epoch"] if state is not None else 0
        changed = check_inputs(source, _digests(parts), accept_changed_inputs, start)
    if not resumed:
        rd.write_splits(parts.data.split_ids(), cfg.data)
    trainer = Trainer(parts, rd, tracker, reporter, on_epoch)
    if state is not None:
        trainer.load_state(state)
    outcome.trainer = trainer
    reporter.header(rd.path, resumed)
    reporter.setup(cfg, parts, tracker.run_ids)
    if changed:
        reporter.console.print(f"[yellow]inputs changed[/], continuing on them: {changed}")
    tracker.log_params({**_params(trainer), **changed})
    if not resumed and (rd.path / rd.CONFIG).is_file():  # the whole resolved config
        tracker.log_artifact(rd.path / rd.CONFIG)
    filled = tracker.sync(trainer.history) if resumed else {}
    return trainer, filled


def _finish(trainer: Trainer, last_epoch: int, outcome: Outcome) -> RunResult:
    cfg, rd, tracker = trainer.cfg, trainer.run_dir, trainer.tracker
    if last_epoch < cfg.train.epochs:  # --until-epoch: checkpointed, to be resumed
        summary = outcome.end(
            RunStatus.STOPPED, f"--until-epoch {last_epoch} of {cfg.train.epochs}"
        )
        trainer.reporter.stopped(last_epoch, cfg.train.epochs, rd.path)
        return RunResult(rd.path, summary or {"status": "stopped"}, trainer.history)
    trainer.summary(RunStatus.FINISHED.value)  # written before it is logged as a file
    figure = loss_dynamics(
        trainer.history,
        rd.figures / "loss_dynamics.png",
        f"{cfg.model.name} ({cfg.method}) on {cfg.data.name}",
    )
    tracker.log_artifact(figure, "figures")
    tracker.log_artifact(rd.summary_path)
    if cfg.track.mlflow.log_checkpoints or cfg.track.wandb.log_checkpoints:
        for path in (rd.last_checkpoint, rd.best_checkpoint):
            tracker.log_artifact(path, "checkpoints")
    summary = outcome.end(RunStatus.FINISHED)
    files = [rd.CONFIG, rd.METRICS, rd.SUMMARY, "splits.json", "checkpoints/", "overlays/"]
    trainer.reporter.done(summary, rd.path, [*files, "figures/loss_dynamics.png"])
    return RunResult(rd.path, summary, trainer.history)


def _run(
    cfg: Config,
    rd: RunDir,
    console: Console | None,
    on_epoch,
    d: distributed.Dist,
    *,
    until_epoch: int | None,
    source: RunDir | None = None,
    longer: bool = False,
    accept_changed_inputs: bool = False,
) -> RunResult:
    """Set up, train, end: one outcome recorded however it ends
    (:mod:`rsexp.experiment.lifecycle`). ``source``: the run a resume continues;
    ``longer``: the resume extends the schedule (``--epochs``)."""
    if not d.is_main:  # quiet: rank 0 prints
        console = Console(file=io.StringIO())
    outcome = Outcome(rd, Reporter(console), resumed=source is not None)
    with recorded(outcome):
        trainer, filled = _setup(
            cfg, rd, outcome, on_epoch, source is not None, d, source, accept_changed_inputs
        )
        if longer:  # a longer schedule: recompute its step counts
            trainer.schedule.total_steps = trainer.schedule.steps_per_epoch * cfg.train.epochs
        if source is not None:
            trainer.reporter.resumed(
                trainer.start_epoch, trainer.partial, trainer.global_step, filled
            )
        last = trainer.run(until_epoch)
        return _finish(trainer, last, outcome)


def train(
    cfg: Config,
    *,
    run_dir: str | Path | None = None,
    until_epoch: int | None = None,
    console: Console | None = None,
    on_epoch=None,
) -> RunResult:
    """Train ``cfg`` in a new run folder (``runs/<experiment>/<run_id>/`` by default).
    Under torchrun, one run on every process (:mod:`rsexp.experiment.distributed`)."""
    preflight(cfg)  # a typo or a missing dataset: before any folder or tracked run
    with _processes(cfg) as (d, own):
        if run_dir is None:
            runs = Path(cfg.train.runs_dir)
            if runs.exists() and not runs.is_dir():
                raise ConfigError(f"train.runs_dir: {runs} is not a folder")
            run_dir = distributed.broadcast(runs / cfg.experiment / new_run_id(cfg), d)
        rd = RunDir(run_dir)
        try:
            rd.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(
                f"train.runs_dir: cannot write the run folder {rd.path}: {e.strerror or e}"
            ) from None
        with _owned(rd, d):
            if rd.has_checkpoint():
                raise FileExistsError(f"{rd.path} already holds a run; use rsexp resume {rd.path}")
            mine = own(rd)
            try:
                mine.save_config(cfg)
            except OSError as e:
                raise ConfigError(
                    f"train.runs_dir: cannot write the run folder {rd.path}: {e.strerror or e}"
                ) from None
            return _run(cfg, mine, console, on_epoch, d, until_epoch=until_epoch)


@contextmanager
def _owned(rd: RunDir, d: distributed.Dist):
    """The run folder held for the run's life by the process that writes it (rank 0)."""
    if d.is_main:
        with rd.lock():
            yield
    else:
        yield


@contextmanager
def _processes(cfg: Config):
    """This process's rank, and ``own(rd)``: the folder it writes (``rd`` on rank 0, a
    scratch folder elsewhere, removed at the end); the process group is left at the end.
    """
    d = distributed.init(cfg.train.device)
    scratch = None if d.is_main else distributed.scratch_dir(d)
    try:
        yield d, (lambda rd: rd if scratch is None else RunDir(scratch))
    finally:
        if scratch is not None:
            distributed.remove_scratch(scratch)
        distributed.finish(d)


# What a resume may change: where the run's files, data and trackers live and how many
# threads and workers it uses; never what it computes (rsexp resume --help lists them).
MOVABLE = (
    "train.runs_dir",
    "train.threads",
    "train.device",
    "train.log_every",
    "data.root",
    "data.cache_dir",
    "data.num_workers",
    "data.decode_workers",
    "track.mlflow.tracking_uri",
    "track.mlflow.system_metrics_s",
    "track.wandb.mode",
    "track.retry_s",
)


def resume_overrides(cfg: Config, overrides: list[str], epochs: int | None, where: Path):
    """``cfg`` with the overrides a resume accepts (:data:`MOVABLE`; ``train.epochs=N``
    as ``--epochs N``), and the epochs to extend to. Any other override would change the
    run: refused, naming it.

    Raises:
        ResumeRefused: naming the overrides refused and the ones accepted.
    """
    from rsexp.config import parse_override

    refused, accepted = [], []
    for arg in overrides:
        key, value = parse_override(arg)
        if key == "train.epochs":
            if epochs is not None and epochs != value:
                raise ResumeRefused(f"{arg} and --epochs {epochs} disagree; give one")
            epochs = int(value)
        elif key in MOVABLE:
            accepted.append(arg)
        else:
            refused.append(arg)
    if refused:
        raise ResumeRefused(
            f"rsexp resume {where}: {', '.join(refused)} would change the run (a resume "
            f"continues it as it was trained). A resume accepts {', '.join(MOVABLE)}, and "
            f"train.epochs=N (or --epochs N) to extend it; for other settings start a new "
            f"run (rsexp train)"
        )
    if accepted:
        cfg = from_dict(to_dict(cfg), accepted)
    return cfg, epochs


def resume(
    run: str | Path,
    *,
    until_epoch: int | None = None,
    epochs: int | None = None,
    runs_dir: str | Path = "runs",
    overrides: list[str] = (),
    accept_changed_inputs: bool = False,
    console: Console | None = None,
    on_epoch=None,
) -> RunResult:
    """Continue a run from its last checkpoint, in the same tracked runs.

    ``epochs`` extends the schedule. ``overrides``: only where the run's files, data and
    trackers live (:data:`MOVABLE`); anything else is refused. The inputs the run
    recorded (guidance file, dataset index, clip cache) must be as they were, unless
    ``accept_changed_inputs`` (the change is then recorded as a param of its own). Each
    backend is first given the epochs it lacks.
    """
    rd = RunDir.find(run, runs_dir)
    cfg, epochs = resume_overrides(rd.config(), list(overrides), epochs, rd.path)
    if epochs is not None and epochs < cfg.train.epochs:
        raise ConfigError(
            f"--epochs {epochs}: {rd.path} is a {cfg.train.epochs}-epoch run; a resume can "
            f"extend a run, not shrink it (stop early with --until-epoch)"
        )
    if epochs is not None:
        cfg = replace(cfg, train=replace(cfg.train, epochs=epochs))
    with _processes(cfg) as (d, own), _owned(rd, d):
        mine = own(rd)
        if epochs is not None or overrides:
            mine.save_config(cfg)
        return _run(
            cfg, mine, console, on_epoch, d, until_epoch=until_epoch, source=rd,
            longer=epochs is not None, accept_changed_inputs=accept_changed_inputs,
        )  # fmt: skip


def run_or_resume(cfg: Config, run_dir: str | Path, console: Console | None = None, on_epoch=None):
    """The run in ``run_dir``, whatever state it is in: read back when finished,
    resumed from its checkpoint, or trained from the start (idempotent; the sweep's
    trials and confirmation runs use it)."""
    rd = RunDir(run_dir)
    if rd.is_finished():
        return RunResult(rd.path, rd.summary(), rd.metrics())
    if rd.has_checkpoint():
        return resume(rd.path, console=console, on_epoch=on_epoch)
    return train(cfg, run_dir=rd.path, console=console, on_epoch=on_epoch)
