"""``--launcher slurm`` against a real single-node Slurm (tests/slurm_cluster.py starts
munged, slurmdbd, slurmctld and slurmd on 127.0.0.1 for this module and stops them):
a sweep's workers as one job array whose trials sacct lists as COMPLETED jobs, a
cancelled worker's trial continued from its checkpoint, Ctrl-C cancelling the jobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import slurm_cluster
from optuna.trial import TrialState

from rsexp.cli import main
from rsexp.sweep.study import counts, retry_of
from rsexp.track.local import read_metrics

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "sweeps" / "synthetic.yaml")
STUDY = "synthetic-tsvit"
# one CPU, 1 GB and no GPU per job: the test node has 2 CPUs and 8 GB
ON_SLURM = [
    "sweep.slurm.gpus_per_worker=0",
    "sweep.slurm.cpus_per_worker=1",
    "sweep.slurm.mem_gb=1",
    "sweep.slurm.time=10",
    "sweep.heartbeat_interval=1",
    "sweep.grace_period=3",
    "sweep.confirm_seeds=[0]",
    "sweep.ablation_seeds=[0]",
    "track.backends=[]",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    slurm_cluster.install()
    why = slurm_cluster.missing()
    if why:
        pytest.skip(f"no test Slurm cluster: {why}")
    c = slurm_cluster.Cluster(tmp_path_factory.mktemp("slurm"))
    before = os.environ.get("SLURM_CONF")
    try:
        c.start()
        os.environ["SLURM_CONF"] = str(c.conf)  # sbatch, sacct, scancel: this cluster's
        yield c
    finally:
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before
        c.stop()


@pytest.fixture
def postgres():
    """A database of its own on the local PostgreSQL server, dropped afterwards."""
    psycopg2 = pytest.importorskip("psycopg2")
    name = f"rsexp_slurm_{uuid.uuid4().hex[:8]}"
    try:
        conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres",
                                connect_timeout=3)  # fmt: skip
    except psycopg2.OperationalError as e:
        pytest.skip(f"no PostgreSQL server reachable on 127.0.0.1:5432 ({e})")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
    conn.close()


def wait_for(what: str, predicate, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def sacct_state(cluster, job: str) -> str:
    return cluster.run("sacct", "-j", job, "-n", "-X", "-P", "-o", "State").strip()


def queue(cluster) -> list[str]:
    return cluster.run("squeue", "-h", "-o", "%i %T").split()


def worker_pids(cluster, job: str) -> list[int]:
    """The Python processes of ``job`` on the node (scancel --signal=KILL would cancel the
    job, SIGTERM first, rather than kill it)."""
    lines = cluster.run("scontrol", "listpids", job).splitlines()[1:]
    pids = [int(line.split()[0]) for line in lines if line.split()[0].isdigit()]
    return [p for p in pids if b"submitit" in Path(f"/proc/{p}/cmdline").read_bytes()]


def driver(args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """``rsexp sweep`` in a process of its own, as a user starts it."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rsexp.cli",
            "sweep",
            "--config",
            CONFIG,
            "--launcher",
            "slurm",
            *args,
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "160", **(env or {})},
    )


def test_each_slurm_setting_reaches_sbatch(tmp_path):
    """sweep.slurm.* as the job script's #SBATCH lines (no cluster needed): one GPU per
    worker by default, sweep.nproc GPUs for a trial on several, none when asked."""
    pytest.importorskip("submitit")
    from rsexp.config import load_config
    from rsexp.sweep.common import sweep_paths
    from rsexp.sweep.on_slurm import slurm_jobs

    def script(overrides: list[str]) -> set[str]:
        cfg = load_config(CONFIG, [f"train.runs_dir={tmp_path}", *overrides])
        jobs = slurm_jobs(cfg, sweep_paths(cfg, STUDY), "worker")
        text = jobs.executor._executor._make_submission_file_text("true", "uid")
        return {line.removeprefix("#SBATCH ") for line in text.splitlines()}

    lines = script([
        "sweep.slurm.partition=gpu", "sweep.slurm.account=lab", "sweep.slurm.qos=high",
        "sweep.slurm.time=90", "sweep.slurm.mem_gb=64", "sweep.slurm.cpus_per_worker=6",
        "sweep.slurm.extra={constraint: a100}",
    ])  # fmt: skip
    assert {"--partition=gpu", "--account=lab", "--qos=high", "--time=90", "--mem=64GB",
            "--cpus-per-task=6", "--constraint=a100", "--gpus-per-node=1",
            f"--job-name=rsexp-{STUDY}-worker"} <= lines  # fmt: skip
    assert not any(line.startswith("--partition") for line in script([]))  # the default one
    assert "--gpus-per-node=4" in script(["sweep.nproc=4"])
    assert not any(line.startswith("--gpus") for line in script(["sweep.slurm.gpus_per_worker=0"]))


def test_slurm_refuses_a_sqlite_study_and_names_the_fix(tiny, tmp_path, capsys):
    code = main(["sweep", "--config", CONFIG, "--launcher", "slurm", *tiny, *ON_SLURM])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert "SQLite file on this machine" in err and "--storage postgresql://" in err
    assert "sweep.slurm.allow_sqlite=true" in err


def test_a_two_worker_slurm_sweep_ends_with_its_budget_and_tables(
    cluster, postgres, tiny, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    args = ["--trials", "2", "--workers", "2", "--storage", postgres, *tiny, *ON_SLURM,
            "sweep.epochs=1"]  # fmt: skip
    assert main(["sweep", "--config", CONFIG, "--launcher", "slurm", *args]) == 0
    trials = optuna.load_study(study_name=STUDY, storage=postgres).get_trials()
    assert len(counts(trials)) == 2 and len(trials) == 2
    assert all(t.state == TrialState.COMPLETE for t in trials)
    jobs = {t.user_attrs["slurm_job"] for t in trials}
    assert all("_" in j for j in jobs)  # tasks of the job array
    for job in jobs:  # the worker jobs ended well, as Slurm's accounting says
        assert sacct_state(cluster, job) == "COMPLETED", job
    sweep = tmp_path / "runs" / "synthetic" / f"sweep-{STUDY}"
    info = json.loads((sweep / "reports" / "sweep.json").read_text())
    assert info["best_trial"] in {t.number for t in trials}
    assert "| TSViT + RS |" in (sweep / "reports" / "comparison.md").read_text()
    # the confirmation runs were Slurm jobs too, each finished in its folder
    confirm = sorted((sweep / "confirm").iterdir())
    assert len(confirm) >= 3
    for run in confirm:
        assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    logs = list((sweep / "slurm").glob("*_log.out"))
    assert len(logs) >= len(jobs) + len(confirm)
    assert not queue(cluster)


@pytest.mark.parametrize("kill", [False, True], ids=["scancel", "SIGKILL-without-sacct"])
def test_a_cancelled_or_killed_worker_job_is_replaced_and_its_trial_continues(
    cluster, postgres, tiny, tmp_path, monkeypatch, kill
):
    """scancel: the worker checkpoints its trial on the way out (SIGTERM takes the Ctrl-C
    path). SIGKILL: nothing runs on the way out; the trial's heartbeat goes stale and it
    is failed and re-run by the driver's stale-trial check. Either way a job submitted in
    its place continues the trial's run from its checkpoint. The SIGKILL case also runs
    the driver as on a cluster without accounting (its sacct fails): it tells that the
    job ended from squeue."""
    monkeypatch.chdir(tmp_path)
    # 12 short epochs: the job is stopped after the second, long before the last
    slow = ["data.synthetic.num_train=96", "sweep.epochs=12", "sweep.pruner=none"]
    args = ["--trials", "1", "--workers", "1", "--trials-only", "--storage", postgres,
            *tiny, *ON_SLURM, *slow]  # fmt: skip
    env = {}
    if kill:
        stub = tmp_path / "bin" / "sacct"
        stub.parent.mkdir()
        stub.write_text("#!/bin/sh\necho 'sacct: error: accounting is off' >&2\nexit 1\n")
        stub.chmod(0o755)
        env["PATH"] = f"{stub.parent}:{os.environ['PATH']}"
    proc = driver(args, tmp_path / "driver.log", env)
    run_dir = tmp_path / "runs" / "synthetic" / f"sweep-{STUDY}" / "trial-0000"
    wait_for("trial 0's second epoch", lambda: len(read_metrics(run_dir)) >= 2, 150)
    study = optuna.load_study(study_name=STUDY, storage=postgres)
    job = study.get_trials()[0].user_attrs["slurm_job"]
    if kill:  # as the OOM killer or a lost node would: the worker's processes, at once
        for pid in worker_pids(cluster, job):
            os.kill(pid, signal.SIGKILL)
    else:
        cluster.run("scancel", job)
    wait_for("the job ended", lambda: sacct_state(cluster, job) not in ("RUNNING", "PENDING"))
    before = read_metrics(run_dir)  # what the first job had logged
    assert proc.wait(timeout=240) == 0, (tmp_path / "driver.log").read_text()[-3000:]
    trials = study.get_trials()
    first, rerun = trials[0], trials[-1]
    assert first.state == TrialState.FAIL
    assert bool(first.user_attrs.get("interrupted")) is not kill  # checkpointed on the way
    assert retry_of(rerun) == 0
    assert rerun.state == TrialState.COMPLETE and rerun.user_attrs["run_dir"] == str(run_dir)
    assert rerun.user_attrs["slurm_job"] != job  # a job submitted in place of the first
    assert sacct_state(cluster, rerun.user_attrs["slurm_job"]) == "COMPLETED"
    assert len(counts(trials)) == 1
    # continued from its checkpoint: the first job's epochs kept as they were (a run
    # started again would log new times and losses), each epoch logged once, in order
    after = read_metrics(run_dir)
    assert 2 <= len(before) < 12 and after[: len(before)] == before
    assert [r["epoch"] for r in after] == list(range(1, 13))
    # the driver said the first job ended and how (a job in its place is submitted at
    # once, or, while the killed trial still looked alive, once its heartbeat was stale)
    said = " ".join((tmp_path / "driver.log").read_text().split())
    how = "ended, state unknown (sacct knows no job" if kill else "CANCELLED"
    assert f"Slurm job {job} {how}" in said, said[-2000:]


def test_ctrl_c_of_the_driver_cancels_its_jobs(cluster, postgres, tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    slow = ["data.synthetic.num_train=96", "sweep.epochs=20", "sweep.pruner=none"]
    args = ["--trials", "2", "--workers", "2", "--trials-only", "--storage", postgres,
            *tiny, *ON_SLURM, *slow]  # fmt: skip
    proc = driver(args, tmp_path / "driver.log")
    wait_for("two running worker jobs", lambda: queue(cluster).count("RUNNING") == 2, 90)
    first = tmp_path / "runs" / "synthetic" / f"sweep-{STUDY}" / "trial-0000"
    wait_for("trial 0's first epoch", lambda: read_metrics(first), 120)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, (tmp_path / "driver.log").read_text()[-3000:]
    assert not queue(cluster)  # the driver waited until its jobs had left the queue
    out = (tmp_path / "driver.log").read_text()
    assert "cancelling the Slurm jobs" in out and "run the same command again" in out
    trials = optuna.load_study(study_name=STUDY, storage=postgres).get_trials()
    shown = [(t.number, t.state.name, t.user_attrs) for t in trials]
    assert all(t.state != TrialState.RUNNING for t in trials), shown
    assert trials[0].user_attrs.get("interrupted"), (shown, out[-3000:])


def slurm_job_ids(folder: Path) -> set[str]:
    """The jobs submitit ran from ``folder``, by their log files' names
    (``<job>_<task>_log.out``, ``<array>_<index>_<task>_log.out``)."""
    return {p.name.split("_")[0] for p in folder.glob("*_log.out")}


def test_train_and_paper_run_as_slurm_jobs(cluster, tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    on_slurm = [o for o in ON_SLURM if o.startswith("sweep.slurm.")] + ["track.backends=[]"]
    run_dir = tmp_path / "one-run"
    args = ["--config", CONFIG, "--launcher", "slurm", "--run-dir", str(run_dir)]
    assert main(["train", *args, *tiny, *on_slurm, "train.epochs=1"]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    (job,) = slurm_job_ids(tmp_path / "runs" / "synthetic" / "slurm")
    # the function returned before Slurm closed the job: COMPLETED once it has
    wait_for("the job COMPLETED", lambda: sacct_state(cluster, job) != "RUNNING", 30)
    assert sacct_state(cluster, job) == "COMPLETED"
    args = ["--config", CONFIG, "--launcher", "slurm", "--models", "tsvit", "--seeds", "1"]
    assert main(["paper", *args, *tiny, *on_slurm, "train.epochs=1"]) == 0
    paper = tmp_path / "runs" / "synthetic" / "paper"
    table1 = (paper / "reports" / "table1.md").read_text()
    assert "| synthetic | TSViT |" in table1 and "| synthetic | TSViT + RS |" in table1
    (array,) = slurm_job_ids(paper / "slurm")  # both rows' runs: one job array

    def states():
        return cluster.run("sacct", "-j", array, "-n", "-X", "-P", "-o", "State").split()

    wait_for("the array's tasks ended", lambda: "RUNNING" not in states(), 30)
    assert states() == ["COMPLETED", "COMPLETED"]
