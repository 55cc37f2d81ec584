"""Finished runs as flat records for the tables, read from a runs folder or an MLflow
store: the same runs give the same records from either.

A record carries the tags every run has (dataset, model, method = baseline | rs, seed,
stage = train | trial | confirm | paper; never parsed from run names) and its resolved
config, flattened (``config.yaml``, or the MLflow run's params: the same strings), so
that the tables can tell runs of one configuration from runs of another
(:mod:`rsexp.report.rows`). A paper row that starts from pretrained weights
(``timesformer*``) is its own model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rsexp.errors import RunFileError, SourceError  # noqa: F401 (raised here)
from rsexp.experiment.rundir import RunDir


@dataclass
class RunRecord:
    run_id: str
    dataset: str
    model: str
    method: str
    seed: int
    stage: str
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    ref: str = ""  # where its history is: the run folder, or "<mlflow uri>#<run id>"
    # the resolved config, flattened, values as the run's params spell them
    config: dict[str, str] = field(default_factory=dict)
    ended: float = 0.0  # when it finished (seconds since the epoch), to order reruns


# the config sections a run's params hold (the rest are provenance: git.*, version.*)
SECTIONS = ("data.", "guidance.", "model.", "loss.", "optim.", "train.", "track.", "sweep.")


def param_value(value) -> str:
    """A config value as the run's params spell it (the MLflow param, ``params.json``)."""
    import json

    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)


def flat_config(tree: dict) -> dict[str, str]:
    """A nested config (``config.yaml``) as ``{dotted key: param string}``; a key the
    run does not have (written by an rsexp that had no such setting) reads as today's
    default, which is what that rsexp did."""
    from rsexp.config import flatten

    return {**_defaults(), **{k: param_value(v) for k, v in flatten(tree).items()}}


def _defaults() -> dict[str, str]:
    from rsexp.config import Config, flatten, to_dict

    return {k: param_value(v) for k, v in flatten(to_dict(Config())).items()}


def _model(model: str, tags: dict, pretrained: str) -> str:
    if tags.get("row"):
        return tags["row"]
    return f"{model}*" if pretrained else model


def from_runs_folder(root: str | Path, warn=None) -> list[RunRecord]:
    """Every finished run under ``root`` (its ``summary.json`` and ``config.yaml``); a run
    whose files cannot be read is left out and named to ``warn``."""
    root = Path(root)
    out = []
    for path in sorted(root.rglob("summary.json")):
        if "mlflow-artifacts" in path.parts or "wandb" in path.parts:
            continue  # copies logged as artifacts
        try:
            summary = RunDir(path.parent).summary()
        except RunFileError as e:
            if warn is not None:
                warn(f"{e}; the run is left out")
            continue
        if summary.get("status") != "finished":
            continue
        # the raw YAML, not RunDir.config(): a run written by an older rsexp may hold keys
        # the config tree no longer has, and its tags are all a table needs
        cfg = yaml.safe_load((path.parent / "config.yaml").read_text()) or {}
        tags = {str(k): str(v) for k, v in (cfg.get("track", {}).get("tags") or {}).items()}
        pretrained = (cfg.get("model") or {}).get("pretrained", "")
        out.append(
            RunRecord(
                run_id=summary["run_id"],
                dataset=summary["dataset"],
                model=_model(summary["model"], tags, pretrained),
                method=summary["method"],
                seed=int(summary["seed"]),
                stage=tags.get("stage", "train"),
                metrics={
                    k: float(v)
                    for k, v in summary.items()
                    if k.startswith(("val/", "test/")) and isinstance(v, (int, float))
                },
                tags=tags,
                ref=str(path.parent),
                config=flat_config(cfg),
                ended=path.stat().st_mtime,
            )
        )
    return out


_F1_KEY = re.compile(r"/f1_(\d+)$")


def from_mlflow(uri: str) -> list[RunRecord]:
    """Every FINISHED run of every experiment in the MLflow store at ``uri`` that
    carries rsexp's tags (the sweep's parent runs do not: they are skipped)."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=uri)
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    out, token = [], None
    while ids:
        page = client.search_runs(
            ids, "attributes.status = 'FINISHED'", max_results=1000, page_token=token
        )
        for run in page:
            t = run.data.tags
            if not all(k in t for k in ("dataset", "model", "method", "seed")):
                continue
            params = run.data.params
            out.append(
                RunRecord(
                    run_id=run.info.run_name or run.info.run_id,  # the run folder's name
                    dataset=t["dataset"],
                    model=_model(t["model"], t, params.get("model.pretrained", "")),
                    method=t["method"],
                    seed=int(t["seed"]),
                    stage=t.get("stage", "train"),
                    # MLflow keys allow no "@": val/f1_50 was val/f1@50
                    metrics={
                        _F1_KEY.sub(r"/f1@\1", k): float(v)
                        for k, v in run.data.metrics.items()
                        if k.startswith(("val/", "test/"))
                    },
                    tags=dict(t),
                    ref=f"{uri}#{run.info.run_id}",
                    config={
                        **_defaults(),
                        **{k: v for k, v in params.items() if k.startswith(SECTIONS)},
                    },
                    ended=(run.info.end_time or 0) / 1000,
                )
            )
        token = page.token
        if not token:
            break
    return sorted(out, key=lambda r: r.run_id)


def collect(source: str, warn=None) -> list[RunRecord]:
    """Records from ``source``: a runs folder, or an MLflow tracking URI."""
    if source.startswith(("sqlite:", "http:", "https:", "postgresql:", "mysql:")):
        return from_mlflow(source)
    if source.startswith("wandb:"):
        raise SourceError(
            f"--source {source}: reading W&B runs needs its online API (wandb 0.31 has no "
            f"reader for offline runs); point --source at the runs folder, which holds "
            f"the same numbers"
        )
    if not Path(source).is_dir():
        raise SourceError(
            f"--source {source}: not a runs folder and not an MLflow tracking URI "
            f"(sqlite:///..., http://...)"
        )
    return from_runs_folder(source, warn)
