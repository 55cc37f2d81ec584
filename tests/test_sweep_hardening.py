"""Sweep hardening (issue 9): a killed driver and an immediate rerun, storage URLs,
reports beside the runs they describe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from rsexp.cli import main
from rsexp.config import load_config
from rsexp.experiment import RunDir
from rsexp.sweep.common import sweep_paths
from rsexp.sweep.study import StorageError, counts, storage_url

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "sweeps" / "synthetic.yaml")


def test_reports_live_with_the_runs_they_describe(tmp_path):
    a = load_config(CONFIG, [f"train.runs_dir={tmp_path / 'a'}"])
    b = load_config(CONFIG, [f"train.runs_dir={tmp_path / 'b'}"])
    pa, pb = sweep_paths(a, "s"), sweep_paths(b, "s")
    assert pa.reports != pb.reports
    assert pa.reports.is_relative_to(tmp_path / "a") and pb.reports.is_relative_to(tmp_path / "b")
    assert sweep_paths(a, "s", tmp_path / "mine").reports == tmp_path / "mine"


def test_storage_urls_get_a_driver_or_a_clear_error(tmp_path):
    assert storage_url("postgresql://postgres@127.0.0.1/x").startswith("postgresql+psycopg")
    assert storage_url("postgresql+psycopg2://u@h/x") == "postgresql+psycopg2://u@h/x"
    ok = f"sqlite:///{tmp_path}/o.db"
    assert storage_url(ok) == ok
    with pytest.raises(StorageError, match="does not exist; create it"):
        storage_url(f"sqlite:///{tmp_path}/missing/o.db")
    with pytest.raises(StorageError, match="unknown database 'mongodb'"):
        storage_url("mongodb://h/x")
    with pytest.raises(StorageError, match="not a URL"):
        storage_url("runs/optuna.db")
    with pytest.raises(StorageError) as e:
        storage_url("redis://user:hunter2secret@h/x")
    assert "hunter2secret" not in str(e.value)


def test_a_plain_postgresql_url_runs_a_sweep(tiny, tmp_path, monkeypatch):
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    except psycopg2.OperationalError as e:
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432 ({e})")
    name = f"rsexp_plain_{os.getpid()}"
    conn.autocommit = True
    conn.cursor().execute(f"CREATE DATABASE {name}")
    conn.close()
    monkeypatch.chdir(tmp_path)
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    fast = ["sweep.epochs=1", "sweep.confirm_seeds=[0]", "sweep.ablation_seeds=[0]"]
    args = ["sweep", "-c", CONFIG, "--trials", "1", "--storage", url, *tiny, *fast]
    assert main([*args, "track.backends=[local]"]) == 0
    study = optuna.load_study(study_name="synthetic-tsvit", storage=storage_url(url))
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE]


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PDEATHSIG")
def test_sigkilled_driver_then_immediate_rerun_is_exact(tiny, tmp_path):
    """SIGKILL the sweep driver mid-trial, rerun at once: the worker it left does not
    train on alone, the rerun finishes the dead trial (or re-runs it) instead of counting
    it as done, the budget is exact, and every trial ends COMPLETE, PRUNED or FAIL."""
    args = [
        "sweep",
        "-c",
        CONFIG,
        "--trials",
        "2",
        "--workers",
        "1",
        *tiny,
        "data.synthetic.num_train=160",
        "sweep.epochs=6",
        "sweep.heartbeat_interval=1",
        "sweep.grace_period=3",
        "sweep.confirm_seeds=[0]",
        "sweep.ablation_seeds=[0]",
        "track.backends=[local]",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rsexp.cli", *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    trial_dir = tmp_path / "runs" / "synthetic" / "sweep-synthetic-tsvit" / "trial-0000"
    deadline = time.monotonic() + 120
    while not (
        (trial_dir / "metrics.jsonl").is_file()
        and (trial_dir / "metrics.jsonl").read_text().count("\n") >= 1
    ):
        assert proc.poll() is None and time.monotonic() < deadline, "trial never started"
        time.sleep(0.1)
    workers = children(proc.pid)
    assert workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while any(alive(w) for w in workers):  # the orphan worker stops (PDEATHSIG)
        assert time.monotonic() < deadline, "a worker outlived its driver"
        time.sleep(0.1)
    os.chdir(tmp_path)
    try:
        assert main(args) == 0
    finally:
        os.chdir(ROOT)
    url = f"sqlite:///{(tmp_path / 'runs' / 'synthetic' / 'optuna.db').resolve()}"
    trials = optuna.load_study(study_name="synthetic-tsvit", storage=url).get_trials()
    assert len(counts(trials)) == 2
    assert all(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for t in trials
    )
    final = [
        t
        for t in trials
        if t.user_attrs.get("run_dir") == str(trial_dir)
        and t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    ]
    assert final, "the killed trial's run was continued to its end"
    epochs = [
        json.loads(x)["epoch"] for x in (trial_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == list(range(1, len(epochs) + 1))  # each epoch once
    reports = tmp_path / "runs" / "synthetic" / "sweep-synthetic-tsvit" / "reports"
    assert (reports / "comparison.md").is_file()


def test_ctrl_c_on_rsexp_paper_checkpoints_its_runs_and_the_rerun_continues(tiny, tmp_path):
    """A terminal's Ctrl-C (SIGINT to the foreground process group) on ``rsexp paper``:
    its pool workers run in their own sessions, the parent passes the interrupt on once,
    each run in progress checkpoints, the command exits 130 promptly, and the same
    command finishes every run with each epoch logged once."""
    args = [
        "paper", "-c", CONFIG, "--models", "tsvit", "--seeds", "1", "--workers", "2",
        *tiny, "data.synthetic.num_train=160", "train.epochs=6", "track.backends=[local]",
    ]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "rsexp.cli", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    paper = tmp_path / "runs" / "synthetic" / "paper"
    deadline = time.monotonic() + 120
    while not any(
        (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text().count("\n")
        for run in paper.glob("tsvit-*")
    ):
        assert proc.poll() is None and time.monotonic() < deadline, "no run started"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:]
    assert "the same command continues them" in " ".join(out.split())
    epochs = {run.name: len(RunDir(run).metrics()) for run in paper.glob("tsvit-*")}
    assert epochs and all(n < 6 for n in epochs.values())  # stopped early, checkpointed
    os.chdir(tmp_path)
    try:
        assert main(args) == 0
    finally:
        os.chdir(ROOT)
    for run in paper.glob("tsvit-*"):
        assert [m["epoch"] for m in RunDir(run).metrics()] == [1, 2, 3, 4, 5, 6]


def grid_of(tmp_path, configs: dict):
    from rsexp.grid import GridRow, GridRun, Table

    rows = [GridRow(k, [GridRun(c, tmp_path / k)]) for k, c in configs.items()]
    return [Table("t", rows)]


def test_a_failed_confirmation_or_paper_run_is_named_with_its_error(tiny, tmp_path):
    import io

    from rich.console import Console

    from rsexp.errors import JobFailed
    from rsexp.grid import run_grid

    bad = [*tiny, "track.backends=[local]", f"model.pretrained={tmp_path / 'missing.pth'}"]
    good = [*tiny, "track.backends=[local]", "train.epochs=1"]
    tables = grid_of(tmp_path, {"r-ok": load_config(CONFIG, good),
                                "r-bad": load_config(CONFIG, bad)})  # fmt: skip
    with pytest.raises(JobFailed, match=r"r-bad: ConfigError: model.pretrained"):
        run_grid(tables, tmp_path / "t", 2, [{}, {}], Console(file=io.StringIO()), "t", "t")
    # the other run still finished; each job's folder got its config first
    assert RunDir(tmp_path / "r-ok").is_finished()
    assert RunDir(tmp_path / "r-bad").config().model.pretrained.endswith("missing.pth")


def test_sweep_devices_give_each_worker_its_own_gpu():
    from rsexp.config import ConfigError
    from rsexp.jobs import worker_devices

    four = ["0", "1", "2", "3"]
    assert worker_devices("auto", 4, four) == four
    assert worker_devices("auto", 2, ["2", "3"]) == ["2", "3"]  # inherited CUDA_VISIBLE_DEVICES
    assert worker_devices("auto", 2, []) == [None, None]  # CPU machine: nothing set
    assert worker_devices("cpu", 2, four) == ["", ""]
    assert worker_devices("0,0,1", 3, four) == ["0", "0", "1"]  # shared on purpose
    with pytest.raises(ConfigError, match=r"sweep.devices: 5 workers x 1 GPUs but 4 visible"):
        worker_devices("auto", 5, four)
    # sweep.nproc = 2: two GPUs per worker, never split across workers by accident
    assert worker_devices("auto", 2, four, per_worker=2) == ["0,1", "2,3"]
    assert worker_devices("0+1,2+3", 2, four, per_worker=2) == ["0,1", "2,3"]
    with pytest.raises(ConfigError, match=r"sweep.nproc=2 needs 2 GPUs per worker"):
        worker_devices("0,1", 2, four, per_worker=2)
    with pytest.raises(ConfigError, match=r"2 workers x 2 GPUs but 3 visible"):
        worker_devices("auto", 2, ["0", "1", "2"], per_worker=2)
    with pytest.raises(ConfigError, match=r"sweep.devices: GPU 7 is not visible"):
        worker_devices("0,7", 2, four)
    with pytest.raises(ConfigError, match=r"one per worker"):
        worker_devices("0,1", 3, four)


def test_sweep_workers_and_jobs_start_on_their_assigned_gpus(tiny, tmp_path, monkeypatch):
    """Fake GPUs: the driver's workers get CUDA_VISIBLE_DEVICES 0 and 1, and two jobs in
    flight at once (confirmation / paper runs) each run on their slot's device."""
    import io

    from rich.console import Console

    import rsexp.sweep.driver as driver
    from rsexp.grid import run_grid
    from rsexp.jobs import slots, worker_devices

    started = []
    monkeypatch.setattr(
        driver.Job, "spawn", lambda target, args, env, **kw: started.append(env) or None
    )
    devices = worker_devices("auto", 2, ["0", "1"])
    driver._start_workers(load_config(CONFIG, tiny), "s", "sqlite://", devices, tmp_path)
    assert [e.get("CUDA_VISIBLE_DEVICES") for e in started] == ["0", "1"]
    monkeypatch.undo()

    cfgs = {k: load_config(CONFIG, [*tiny, "track.backends=[local]", "train.epochs=1",
                                    f"train.seed={i}"]) for i, k in enumerate("abc")}  # fmt: skip
    run_grid(grid_of(tmp_path, cfgs), tmp_path / "t", 2, slots(devices),
             Console(file=io.StringIO()), "t", "t")  # fmt: skip
    got = {k: RunDir(tmp_path / k).summary()["cuda_visible_devices"] for k in "abc"}
    assert got["a"] == "0" and got["b"] == "1"  # the two first jobs, side by side
    assert got["c"] in ("0", "1")  # the slot that freed first


def test_a_trial_on_two_processes_reports_to_the_study(tiny, tmp_path, capsys):
    """sweep.nproc=2: the trial trains under torchrun (2 gloo processes), rank 0 reports
    every epoch to Optuna, and the trial's value is its run's val/top1. --trials-only (a
    study's other machine): trials until the budget is spent, no confirmation, no table."""
    over = [*tiny, "sweep.epochs=2", "sweep.nproc=2", "sweep.pruner=none",
            "track.backends=[local]"]  # fmt: skip
    assert main(["sweep", "--config", CONFIG, "--trials", "1", "--trials-only", *over]) == 0
    assert "--trials-only: no confirmation runs or tables" in capsys.readouterr().out
    root = tmp_path / "runs" / "synthetic" / "sweep-synthetic-tsvit"
    assert not (root / "confirm").exists() and not (root / "reports").exists()
    cfg = load_config(CONFIG, over)
    study = optuna.load_study(
        study_name="synthetic-tsvit",
        storage=f"sqlite:///{cfg.train.runs_dir}/synthetic/optuna.db",
    )
    (trial,) = study.get_trials()
    assert trial.state == TrialState.COMPLETE, trial.user_attrs
    run = RunDir(trial.user_attrs["run_dir"])
    summary = run.summary()
    assert summary["processes"] == 2 and summary["status"] == "finished"
    assert trial.value == pytest.approx(summary["val/top1"])
    assert trial.intermediate_values == {1: pytest.approx(run.metrics()[0]["val/top1"]),
                                         2: pytest.approx(summary["val/top1"])}  # fmt: skip
