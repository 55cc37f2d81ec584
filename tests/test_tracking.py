"""Tracking: MLflow (embedded SQLite and a real server), W&B offline, resume, bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from wandb_records import config_updates, finished

from rsexp.config import load_config
from rsexp.experiment import resume, train
from rsexp.track import TrackingError
from rsexp.track.local import read_metrics

CONFIG = "sweeps/synthetic.yaml"
TIME_KEYS = (
    "time/epoch_s",
    "time/clips_per_s",
    "time/data_wait_frac",
    "time/data_wait_warm_frac",
)
EPOCH_KEYS = [
    "loss/total",
    "loss/ce",
    "loss/spatial",
    "loss/temporal",
    "val/top1",
    "val/top5",
    "val/clip_loss",
    "val/loss_spatial",
    "lr",
    "time/epoch_s",
    "time/clips_per_s",
    "time/data_wait_frac",
    "guidance/frac_frames",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 (random free port, SQLite backend in a temp dir)."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    exe = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [
            str(exe),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'db.sqlite'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=root,
    )
    uri = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(uri + "/health", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("mlflow server exited at start")
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("mlflow server did not answer /health within 90 s")
    yield uri
    proc.terminate()
    proc.wait(timeout=30)


def check_mlflow_run(uri: str, result, epochs: int, num_overlays: int):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    run_id = json.loads((result.run_dir / "trackers.json").read_text())["mlflow"]["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == result.run_dir.name
    params, tags = run.data.params, run.data.tags
    assert params["loss.lambda_s"] == "1.0" and params["model.name"] == "tsvit"
    for key in (
        "git.commit",
        "git.dirty",
        "python",
        "version.torch",
        "version.timm",
        "version.optuna",
        "version.mlflow",
        "version.wandb",
        "device",
        "dataset.digest",
        "guidance.digest",
    ):
        assert key in params, key
    assert (tags["dataset"], tags["model"], tags["method"], tags["seed"]) == (
        "synthetic",
        "tsvit",
        "rs",
        "0",
    )
    # the UI's Source and User: the checkout's commit, the user
    assert tags["mlflow.source.git.commit"] == params["git.commit"] != "unknown"
    assert tags["mlflow.user"] and tags["mlflow.source.name"]
    # params a person can scan: what applies to this run; the rest is config.yaml
    assert not [k for k in params if k.startswith(("sweep.", "track.", "guidance.openai."))]
    assert "data.synthetic.num_train" in params  # the run's own dataset's settings
    (config,) = [f.path for f in client.list_artifacts(run_id) if f.path == "config.yaml"]
    logged = yaml.safe_load(open(client.download_artifacts(run_id, config)))
    assert logged == yaml.safe_load((result.run_dir / "config.yaml").read_text())
    local = read_metrics(result.run_dir)
    for key in EPOCH_KEYS:
        hist = client.get_metric_history(run_id, key)
        assert sorted(m.step for m in hist) == list(range(1, epochs + 1)), key
        if key not in TIME_KEYS:
            assert [m.value for m in sorted(hist, key=lambda m: m.step)] == pytest.approx(
                [r[key] for r in local]
            )
    images = [f.path for f in client.list_artifacts(run_id, "images") if f.path.endswith("png")]
    steps = sorted(int(Path(p).name.split("+")[2]) for p in images)
    # step 0: the attention before training, so that the UI's first view has an image
    assert steps == sorted(list(range(0, epochs + 1)) * num_overlays)
    assert all(Path(p).name.startswith("overlay~val_") for p in images)
    figures = [f.path for f in client.list_artifacts(run_id, "figures")]
    assert figures == ["figures/loss_dynamics.png"]
    return client, run_id


def test_mlflow_embedded_sqlite(tiny, tmp_path):
    over = ["track.overlays.num_clips=2", "track.mlflow.system_metrics_s=0.5"]
    result = train(load_config(CONFIG, [*tiny, *over]))
    assert (tmp_path / "runs" / "mlflow.db").is_file()
    assert not (Path.cwd() / "mlruns").exists()
    client, run_id = check_mlflow_run(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}", result, 2, 2)
    # MLflow's System metrics tab: sampled while the run trained, stopped with it
    system = client.get_run(run_id).data.metrics
    for key in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"):
        assert key in system, sorted(system)
    # the same images sit in the run folder, one per clip and epoch
    assert len(list((result.run_dir / "overlays").glob("val_*/epoch_*.png"))) == 6  # 0, 1, 2
    assert (result.run_dir / "figures" / "loss_dynamics.png").is_file()


def test_mlflow_tracking_server(tiny, mlflow_server):
    cfg = load_config(
        CONFIG, [*tiny, "track.overlays.num_clips=2", f"track.mlflow.tracking_uri={mlflow_server}"]
    )
    check_mlflow_run(mlflow_server, train(cfg), 2, 2)


def test_unreachable_server_fails_before_training(tiny, tmp_path):
    cfg = load_config(CONFIG, [*tiny, f"track.mlflow.tracking_uri=http://127.0.0.1:{free_port()}"])
    with pytest.raises(TrackingError, match="not reachable"):
        train(cfg, run_dir=tmp_path / "runs" / "x")
    assert not (tmp_path / "runs" / "x" / "checkpoints").exists()
    assert not (tmp_path / "data").exists()  # not even the data was built


def test_unknown_backend_lists_valid_ones(tiny, tmp_path, capsys):
    from rsexp.cli import main

    assert main(["train", "-c", CONFIG, *tiny, "track.backends=[tensorboard]"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "track.backends: unknown tracker 'tensorboard'" in err
    assert "valid trackers: local, mlflow, wandb" in err
    assert not (tmp_path / "runs").exists()  # found before anything was created


def test_wandb_offline_run_folder(tiny, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", os.devnull)
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = load_config(CONFIG, [*tiny, "track.backends=[wandb]", "track.overlays.num_clips=2"])
    result = train(cfg)
    assert "wandb sync" in capsys.readouterr().out  # the offline notice says how to upload
    (offline,) = (result.run_dir / "wandb").glob("offline-run-*")
    (history,) = offline.glob("run-*.wandb")
    raw = finished(history)
    for key in ("val/top1", "loss/spatial", "loss/temporal", "overlay/val_"):
        assert key.encode() in raw, key
    media = list((offline / "files" / "media" / "images").rglob("*.png"))
    assert len(media) == 6  # 2 clips x (before training + 2 epochs)
    ledger = json.loads((result.run_dir / "trackers.json").read_text())
    assert ledger["wandb"]["epochs"] == [1, 2]
    assert ledger["wandb"]["run_id"] in offline.name
    # the config nested as the YAML is (W&B shows it as loss.lambda_s), values with
    # their types (parallel coordinates and importance panels need numbers: 1.0 not "1.0")
    config = dict(config_updates(history))
    assert config["loss"]["lambda_s"] == 1.0 and config["model"]["name"] == "tsvit"
    assert config["data"]["synthetic"]["num_train"] == 24
    assert "track" not in config and "sweep" not in config  # not what the run computed
    # no absolute symlink (wandb-core links its log from ~/.cache, wandb.save links the
    # file it is given): the folder moved elsewhere holds every file it links to
    links = [p for p in offline.rglob("*") if p.is_symlink()]
    assert not [p for p in links if os.path.isabs(os.readlink(p))], links
    moved = result.run_dir.parent / "moved"
    shutil.copytree(result.run_dir / "wandb", moved, symlinks=True)
    shutil.rmtree(result.run_dir / "wandb")
    for p in moved.rglob("*"):
        assert p.exists(), f"{p} -> {os.readlink(p)}"  # a dangling link
    assert (next(moved.glob("offline-run-*")) / "files" / "summary.json").is_file()


@pytest.mark.parametrize("backend, absent", [("mlflow", "wandb"), ("wandb", "mlflow")])
def test_backends_import_lazily(tiny, backend, absent, tmp_path):
    code = (
        "import sys; from rsexp.config import load_config; from rsexp.experiment import train;"
        f"train(load_config({CONFIG!r}, {[*tiny, f'track.backends=[{backend}]']!r}));"
        f"print('LOADED' if {absent!r} in sys.modules else 'ABSENT')"
    )
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "NETRC": os.devnull}
    env.pop("WANDB_API_KEY", None)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ABSENT")


def test_secrets_never_reach_params_or_config(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-verysecret123")
    cfg = load_config(CONFIG, [*tiny, "track.tags={note: sk-verysecret123}"])
    result = train(cfg)
    for name in ("params.json", "config.yaml", "summary.json"):
        assert "sk-verysecret123" not in (result.run_dir / name).read_text(), name
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    run_id = json.loads((result.run_dir / "trackers.json").read_text())["mlflow"]["run_id"]
    assert "sk-verysecret123" not in json.dumps(client.get_run(run_id).data.params)


def test_redaction_rules():
    from rsexp.track.provenance import redact

    out = redact(
        {
            "track.mlflow.tracking_uri": "postgresql://bob:hunter22@db:5432/x",
            "openai.api_key": "abc",
            "loss.tau": 1.0,
            "note": "tok-123456",
        },
        secrets={"tok-123456"},
    )
    assert out["track.mlflow.tracking_uri"] == "postgresql://bob:***@db:5432/x"
    assert out["openai.api_key"] == "***" and out["note"] == "***" and out["loss.tau"] == 1.0


# ---------------------------------------------------------------- kill and resume


def cli(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "rsexp.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **kw,
    )


def kill_after(proc, run_root: Path, epochs_done: int, sig) -> Path:
    """Wait until a run under ``run_root`` has logged ``epochs_done`` epochs, then ``sig``."""
    deadline = time.time() + 240
    while time.time() < deadline:
        logs = list(run_root.glob("*/metrics.jsonl"))
        if logs and len(read_metrics(logs[0].parent)) >= epochs_done:
            proc.send_signal(sig)
            proc.wait(timeout=60)
            return logs[0].parent
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.02)
    proc.kill()
    pytest.fail("the run did not reach the kill point in time")


KILL_RUN = ["data.synthetic.num_train=96", "train.epochs=6", "model.drop_rate=0.1"]


def strip(history):
    return [{k: v for k, v in h.items() if k not in TIME_KEYS} for h in history]


@pytest.mark.parametrize("backends", ["[]", "[mlflow]"])
def test_sigkill_then_resume_matches_uninterrupted(tiny, tmp_path, backends):
    over = [*tiny, *KILL_RUN, f"track.backends={backends}", "track.overlays.num_clips=1"]
    reference = train(load_config(CONFIG, [*over, f"train.runs_dir={tmp_path / 'ref'}"]))
    root = tmp_path / "runs" / "synthetic"
    proc = cli("train", "--config", CONFIG, *over)
    run_dir = kill_after(proc, root, 2, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "summary.json").exists()
    done = resume(run_dir)
    assert strip(read_metrics(run_dir)) == strip(read_metrics(reference.run_dir))
    assert done.summary["val/top1"] == reference.summary["val/top1"]
    if backends == "[mlflow]":
        from mlflow import MlflowClient

        client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
        assert len(runs) == 1  # resumed into the same tracked run
        run_id = runs[0].info.run_id
        assert runs[0].info.status == "FINISHED"
        for key in ("val/top1", "loss/total", "epoch"):
            assert sorted(m.step for m in client.get_metric_history(run_id, key)) == [
                1,
                2,
                3,
                4,
                5,
                6,
            ], key
        images = [
            f.path for f in client.list_artifacts(run_id, "images") if f.path.endswith(".png")
        ]
        # step 0 (before training) once: the resumed run does not log it again
        assert sorted(int(Path(p).name.split("+")[2]) for p in images) == [0, 1, 2, 3, 4, 5, 6]


def test_ctrl_c_checkpoints_marks_killed_and_resumes_exactly(tiny, tmp_path):
    over = [*tiny, *KILL_RUN, "data.synthetic.num_train=400", "track.overlays.num_clips=0"]
    reference = train(load_config(CONFIG, [*over, f"train.runs_dir={tmp_path / 'ref'}"]))
    root = tmp_path / "runs" / "synthetic"
    proc = cli("train", "--config", CONFIG, *over)
    run_dir = kill_after(proc, root, 1, signal.SIGINT)
    err = proc.stderr.read().decode()
    assert proc.returncode == 130, err[-2000:]
    from rsexp.core.checkpoint import load_checkpoint

    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    run_id = json.loads((run_dir / "trackers.json").read_text())["mlflow"]["run_id"]
    assert client.get_run(run_id).info.status == "KILLED"
    resume(run_dir)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert strip(read_metrics(run_dir)) == strip(read_metrics(reference.run_dir))
    # the interrupt landed inside an epoch or just after one: both resume exactly
    assert state["partial"] is None or state["partial"]["batches_done"] >= 0


def test_interrupt_mid_epoch_resumes_exactly(tiny, tmp_path, monkeypatch):
    """KeyboardInterrupt in the 3rd batch of epoch 2: the checkpoint keeps the 2 batches
    already trained, and the resumed run ends exactly as an uninterrupted one."""
    import rsexp.experiment as ex
    import rsexp.experiment.loop as loop
    from rsexp.core.checkpoint import load_checkpoint

    over = [
        *tiny,
        "train.epochs=3",
        "model.drop_rate=0.1",
        "track.backends=[]",
        "data.synthetic.num_train=40",
    ]
    reference = train(load_config(CONFIG, [*over, f"train.runs_dir={tmp_path / 'ref'}"]))
    real, calls = loop.train_step, {"n": 0}

    def flaky(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 5 + 3:  # 5 batches per epoch: the 3rd batch of epoch 2
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(loop, "train_step", flaky)
    with pytest.raises(ex.Interrupted):
        train(load_config(CONFIG, over), run_dir=tmp_path / "runs" / "cut")
    monkeypatch.setattr(loop, "train_step", real)
    state = load_checkpoint(tmp_path / "runs" / "cut" / "checkpoints" / "last.pt")
    assert state["epoch"] == 1
    assert state["partial"]["epoch"] == 2 and state["partial"]["batches_done"] == 2
    resume(tmp_path / "runs" / "cut")
    assert strip(read_metrics(tmp_path / "runs" / "cut")) == strip(read_metrics(reference.run_dir))


def test_wandb_resume_reattaches_the_same_run(tiny, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", os.devnull)
    monkeypatch.setenv("WANDB_SILENT", "true")
    over = [*tiny, "track.backends=[wandb]", "track.overlays.num_clips=0"]
    part = train(load_config(CONFIG, over), until_epoch=1)
    resume(part.run_dir)
    ledger = json.loads((part.run_dir / "trackers.json").read_text())["wandb"]
    assert ledger["epochs"] == [1, 2]
    dirs = list((part.run_dir / "wandb").glob("offline-run-*"))
    # wandb names a second offline folder of the same run within the same second "<id>-1"
    assert len(dirs) == 2
    assert all(re.search(rf"-{ledger['run_id']}(-\d+)?$", d.name) for d in dirs), dirs


def test_overlays_without_any_guidance(tiny, tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    cfg = load_config(
        CONFIG,
        [
            *tiny,
            "track.backends=[]",
            "track.overlays.num_clips=2",
            f"guidance.path={empty}",
            "loss.lambda_s=0",  # an RS run with a spatial term stops without guidance
        ],
    )
    result = train(cfg)
    assert result.history[-1]["guidance/frac_frames"] == 0.0
    assert result.history[-1]["loss/spatial"] == 0.0  # no guided frame: the term is 0
    assert len(list((result.run_dir / "overlays").glob("val_*/epoch_*.png"))) == 6  # 0, 1, 2


def _start_embedded(runs_dir: str) -> str:
    from rsexp.track.base import RunInfo
    from rsexp.track.mlflow_writer import MlflowWriter

    return MlflowWriter("", "", runs_dir).start(RunInfo(Path(runs_dir), "r", "exp", {}))


def test_parallel_runs_open_a_new_embedded_store_safely(tmp_path):
    """Regression: two runs starting at once on a fresh runs/ raced in MLflow's table
    creation ("table registered_models already exists")."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(4) as pool:
        ids = list(pool.map(_start_embedded, [str(tmp_path)] * 4))
    assert len(set(ids)) == 4
