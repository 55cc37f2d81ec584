"""One contract, every tracking backend: the local run folder, MLflow on SQLite and W&B
offline pass the same cases (the ``Writer`` docstring states the contract)."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from wandb_records import config_updates, finished, summary

from rsexp.config import TrackConfig
from rsexp.track import (
    TRACKERS,  # noqa: E402
    RunInfo,
    RunStatus,
    build_writer,
)

BACKENDS = TRACKERS.names()  # every registered tracker passes the one contract


@pytest.fixture
def offline_wandb(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", os.devnull)
    monkeypatch.setenv("WANDB_SILENT", "true")


def writer(name: str, tmp_path):
    cfg = TrackConfig(backends=(name,))
    return build_writer(name, cfg, tmp_path / "runs")


def start(name: str, tmp_path, ref=None, ledger=None):
    w = writer(name, tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    got = w.start(RunInfo(run_dir, "contract", "exp", {"stage": "test", "odd": "a@b"}, ref))
    w.restore(ledger or {})
    return w, got


@pytest.mark.parametrize("name", BACKENDS)
def test_writer_contract(name, tmp_path, offline_wandb):
    w, ref = start(name, tmp_path)
    assert (ref is None) == (name == "local"), "remote backends return their run id"
    assert w.logged_epochs() == set()
    w.log_params({"loss.lambda_s": "1.0", "model.name": "tsvit"})
    img = np.zeros((8, 8, 3), np.uint8)
    for step in (1, 2):
        w.log_image("overlay/clip_a", img, step, f"epoch {step}")
        w.log_metrics({"loss/total": 1.0 / step, "val/top1": 10.0 * step}, step)
    assert w.logged_epochs() == {1, 2}
    # images it can name are exactly the ones logged (or none, when it cannot tell)
    assert w.logged_image_steps() <= {("overlay/clip_a", 1), ("overlay/clip_a", 2)}
    artifact = tmp_path / "summary.json"
    artifact.write_text("{}")
    w.log_artifact(artifact)
    ledger = w.ledger()
    w.finish("KILLED")

    # reattach: the same run, the same epochs, and it takes the next epoch
    w2, ref2 = start(name, tmp_path, ref=ref, ledger=ledger)
    assert ref2 == ref
    assert w2.logged_epochs() == {1, 2}
    w2.log_metrics({"loss/total": 0.3, "val/top1": 30.0}, 3)
    assert w2.logged_epochs() == {1, 2, 3}
    w2.finish("FINISHED")


def held_params(name: str, w, tmp_path) -> list[tuple[str, str]]:
    """Every (key, value) the backend recorded, in order (a key twice if logged twice)."""
    if name == "local":
        return list(json.loads((tmp_path / "run" / "params.json").read_text()).items())
    if name == "mlflow":
        return sorted(w.client.get_run(w.run_id).data.params.items())
    files = sorted((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    for f in files:  # wandb's service may still be writing the file after finish()
        finished(f)
    return [(k, str(v)) for f in files for k, v in config_updates(f)]


@pytest.mark.parametrize("name", BACKENDS)
def test_params_are_not_logged_twice_on_reattach(name, tmp_path, offline_wandb):
    w, ref = start(name, tmp_path)
    w.log_params({"a": "1"})
    ledger = w.ledger()
    w.finish("KILLED")
    w2, _ = start(name, tmp_path, ref=ref, ledger=ledger)
    w2.log_params({"a": "1", "b": "2"})  # MLflow rejects a changed param; same is fine
    w2.finish("FINISHED")
    held = held_params(name, w2, tmp_path)
    if name == "wandb":
        # a W&B config is one mapping per run; an offline session cannot see what an
        # earlier one sent, so it sends its whole config: the last value per key counts
        assert dict(held) == {"a": "1", "b": "2"}, held
    else:  # one param per key, with its one value
        assert sorted(held) == [("a", "1"), ("b", "2")], held


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_the_final_status_is_one_word_in_every_backend(name, tmp_path, offline_wandb):
    for status in RunStatus:
        w, _ = start(name, tmp_path / status.value)
        w.finish(status)
        if name == "mlflow":
            run = w.client.get_run(w.run_id)
            assert run.data.tags["status"] == status.value
            assert run.info.status == status.mlflow
        else:
            (f,) = (tmp_path / status.value / "run" / "wandb").glob("offline-run-*/run-*.wandb")
            # wandb's own service process writes the file; under load it may still be
            # writing its last records when finish() returns
            deadline = time.time() + 20
            while "status" not in summary(f) and time.time() < deadline:
                time.sleep(0.2)
            assert summary(f)["status"] == status.value
