"""Weights & Biases backend: online when logged in, offline otherwise (``wandb sync``).

wandb has no supported reader for offline runs, so which epochs a run already holds is
kept in the run folder's ``trackers.json`` (``wandb_epochs``) by :class:`Tracker`.
"""

from __future__ import annotations

import netrc
import os
import secrets
from pathlib import Path

import numpy as np

from rsexp.track.base import RunInfo, RunStatus, TrackingError, Writer


def typed(value: str):
    """A param string back as the number, bool or list it spells (else the string)."""
    import yaml

    try:
        v = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return v if isinstance(v, (int, float, bool, list)) else value


def nested(flat: dict) -> dict:
    """``{"loss.tau": 1}`` -> ``{"loss": {"tau": 1}}``; a key that is both a value and a
    section (``a`` and ``a.b``) keeps the value under ``a._value``."""
    out: dict = {}
    for key, value in flat.items():
        *path, last = key.split(".")
        node = out
        for part in path:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                child = node[part] = {"_value": child}
            node = child
        if isinstance(node.get(last), dict):
            node[last]["_value"] = value
        else:
            node[last] = value
    return out


def logged_in() -> bool:
    """True when an API key is at hand (env or ``wandb login``'s netrc entry); no network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        rc = netrc.netrc(os.environ.get("NETRC"))
    except (FileNotFoundError, netrc.NetrcParseError):
        return False
    return any("wandb" in host for host in rc.hosts)


def _as_tracking_error(method):
    """A failed call raised as :class:`TrackingError`, which the tracker retries (online,
    wandb's own service queues and retries the uploads; a call fails when that service
    is gone); anything else is a bug."""
    import functools

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        import wandb

        try:
            return method(self, *args, **kwargs)
        except (wandb.Error, OSError) as e:
            raise TrackingError(f"W&B: {e}") from e

    return call


class WandbWriter(Writer):
    name = "wandb"

    def __init__(self, mode: str, project: str, entity: str, group: str, console=None):
        self.mode, self.project, self.entity, self.group = mode, project, entity, group
        self.console = console
        self.epochs: set[int] = set()
        self.images: dict = {}  # an epoch's images, logged with its metrics in one step

    def start(self, info: RunInfo) -> str:
        import wandb

        mode = self.mode
        if mode == "auto":
            mode = "online" if logged_in() else "offline"
        run_id = info.ref or secrets.token_hex(4)
        try:
            self.run = wandb.init(
                project=self.project,
                entity=self.entity or None,
                group=self.group or None,
                name=info.name,
                id=run_id,
                resume="allow",
                mode=mode,
                dir=str(info.run_dir),
                tags=[f"{k}:{v}"[:64] for k, v in info.tags.items()],
                reinit="create_new",
                # x_disable_meta: W&B would record the command line (and any secret
                # given on it) in the run's metadata
                settings=wandb.Settings(silent=True, console="off", x_disable_meta=True),
            )
        except (wandb.Error, OSError) as e:
            raise TrackingError(f"W&B ({mode}): {e}") from e
        # every key is plotted against the epoch, not wandb's internal step
        self.run.define_metric("epoch")
        self.run.define_metric("*", step_metric="epoch")
        self.offline_dir = Path(self.run.dir).parent if mode == "offline" else None
        if self.offline_dir and self.console is not None:
            self.console.print(
                f"W&B: not logged in, logging offline to {self.offline_dir}; upload later "
                f"with: wandb sync {self.offline_dir}"
            )
        return run_id

    def logged_epochs(self) -> set[int]:
        return set(self.epochs)

    def ledger(self) -> dict:
        return {"epochs": sorted(self.epochs)}

    def restore(self, entry: dict) -> None:
        self.epochs = set(entry.get("epochs", []))

    @_as_tracking_error
    def log_params(self, params: dict[str, str]) -> None:
        # with their types: W&B's parallel coordinates and importance panels treat a
        # string "0.15" as a category
        # nested as the YAML is (loss: {lambda_s: ...}); W&B shows and filters them by
        # their dotted names (loss.lambda_s), the names the dashboards use
        self.run.config.update(nested({k: typed(v) for k, v in params.items()}),
                               allow_val_change=True)  # fmt: skip

    @_as_tracking_error
    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        images = {k: v for k, v in self.images.items() if v[0] == step}
        self.images = {}
        # one W&B step per epoch: the images' media slider is indexed by epoch
        self.run.log({**{k: img for k, (_, img) in images.items()}, **metrics, "epoch": step})
        self.epochs.add(step)

    def log_image(self, key: str, image: np.ndarray, step: int, caption: str = "") -> None:
        import wandb

        self.images[key] = (step, wandb.Image(image, caption=caption or None))

    @_as_tracking_error
    def flush_images(self, step: int) -> None:
        images = {k: img for k, (s, img) in self.images.items() if s == step}
        self.images = {k: v for k, v in self.images.items() if v[0] != step}
        if images:
            self.run.log({**images, "epoch": step})

    @_as_tracking_error
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        # a copy inside the run's files/: wandb.save of an outside file leaves an absolute
        # symlink there, which breaks `wandb sync` of a moved or copied run folder
        import shutil

        dest = Path(self.run.dir) / (artifact_path or "") / Path(path).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
        self.run.save(str(dest), base_path=self.run.dir, policy="now")

    @_as_tracking_error
    def finish(self, status: RunStatus, reason: str = "") -> None:
        status = RunStatus(status)
        self.run.summary["status"] = status.value
        if reason:
            self.run.summary["error"] = reason[:4000]
        # W&B marks a run that exits non-zero as failed: only a failure is one
        self.run.finish(exit_code=1 if status is RunStatus.FAILED else 0)
        if self.offline_dir is not None:
            self_contained(self.offline_dir)


def self_contained(folder: Path) -> None:
    """Replace each absolute symlink under ``folder`` (wandb-core links its debug log
    from ~/.cache) with a relative one where the target is inside ``folder``, else with
    a copy of the file: the offline run folder syncs from wherever it is moved to."""
    import shutil

    folder = Path(folder)
    for link in [p for p in folder.rglob("*") if p.is_symlink()]:
        target = Path(os.readlink(link))
        if not target.is_absolute():
            continue
        link.unlink()
        if target.resolve().is_relative_to(folder.resolve()):
            link.symlink_to(os.path.relpath(target.resolve(), link.parent.resolve()))
        elif target.is_file():
            shutil.copy2(target, link)
