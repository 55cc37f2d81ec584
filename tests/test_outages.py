"""The world misbehaving while runs go on: a tracking server that dies mid-run and comes
back, a database that restarts under a sweep. The run folder is the truth; trackers and
stores are caught up, never allowed to stop the work."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "sweeps" / "synthetic.yaml")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """`mlflow server` on 127.0.0.1:port over one SQLite store, stopped and started again
    on the same port and store as a user's server restarts."""

    def __init__(self, root: Path):
        self.root, self.port, self.proc = root, free_port(), None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        exe = Path(sys.executable).parent / "mlflow"
        self.proc = subprocess.Popen(
            [str(exe), "server", "--backend-store-uri", f"sqlite:///{self.root / 'db.sqlite'}",
             "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.root,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.uri + "/health", timeout=1).read()
                return
            except OSError:
                assert self.proc.poll() is None, "mlflow server exited at start"
                time.sleep(0.2)
        pytest.fail("mlflow server did not answer within 120 s")

    def kill(self) -> None:
        """Gone at once, workers and all (a crashed or restarted host)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def wait_for_epoch(run_dir: Path, epoch: int, proc, timeout=300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        path = run_dir / "metrics.jsonl"
        if path.is_file() and f'"epoch": {epoch},' in path.read_text():
            return
        assert proc.poll() is None, "the run ended early"
        time.sleep(0.05)
    pytest.fail(f"epoch {epoch} not logged within {timeout} s")


class Command:
    """A command in the background, its output collected as it comes."""

    def __init__(self, args: list[str]):
        # the MLflow client's own retries off: each failed call fails at once, so the
        # tracker's backoff (3 tries over 3 s) decides when the server is down
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
        self.proc = subprocess.Popen(args, env=env, text=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout))
        self.reader.start()

    @property
    def text(self) -> str:
        return " ".join("".join(self.lines).split())

    def wait_for(self, needle: str, timeout=120) -> None:
        deadline = time.time() + timeout
        while needle not in self.text:
            assert self.proc.poll() is None, f"ended before saying {needle!r}: {self.text}"
            assert time.time() < deadline, f"{needle!r} not said within {timeout} s"
            time.sleep(0.1)

    def finish(self, timeout=300) -> str:
        self.proc.wait(timeout=timeout)
        self.reader.join()
        assert self.proc.returncode == 0, self.text
        return self.text


def train_cmd(run_dir: Path, uri: str, tmp_path: Path, epochs: int, retry_s: int) -> list[str]:
    return [
        sys.executable, "-m", "rsexp.cli", "train", "-c", CONFIG, "--run-dir", str(run_dir),
        f"data.root={tmp_path / 'data'}", f"train.runs_dir={tmp_path / 'runs'}",
        "data.num_frames=5", "data.frame_size=32", "data.batch_size=16",
        "data.synthetic.num_train=640", "data.synthetic.num_val=16",
        "data.synthetic.num_test=16", "data.synthetic.num_classes=4",
        "model.embed_dim=16", "model.depth=2", "model.temporal_depth=1", "model.num_heads=2",
        f"train.epochs={epochs}", "train.threads=1", "track.overlays.num_clips=1",
        f"track.mlflow.tracking_uri={uri}", "track.mlflow.system_metrics_s=0.5",
        f"track.retry_s={retry_s}",
    ]  # fmt: skip


def held_epochs(uri: str, run_dir: Path) -> tuple[dict[str, list[int]], str]:
    """{metric: [steps in its history]} of the run's MLflow run, and its status."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    run_id = json.loads((run_dir / "trackers.json").read_text())["mlflow"]["run_id"]
    steps = {k: sorted(m.step for m in client.get_metric_history(run_id, k))
             for k in ("epoch", "val/top1", "loss/spatial")}  # fmt: skip
    return steps, client.get_run(run_id).info.status


def test_a_tracking_server_outage_never_stops_training_nor_loses_an_epoch(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    # 1. killed while epoch 1 is being logged: training goes on, says so once; back
    #    during the run, the server is given the epochs it missed, each once, and the
    #    system metrics start again
    run = tmp_path / "runs" / "synthetic" / "back-mid-run"
    cmd = Command(train_cmd(run, server.uri, tmp_path, 16, retry_s=120))
    wait_for_epoch(run, 1, cmd.proc)
    server.kill()
    cmd.wait_for("mlflow unreachable")
    # the server takes ~15 s to come back on 2 busy cores; the run is held meanwhile (as
    # a slow machine would be) so that it is back while the run still trains
    cmd.proc.send_signal(signal.SIGSTOP)
    server.start()
    back = time.time()
    cmd.proc.send_signal(signal.SIGCONT)
    text = cmd.finish()
    assert text.count("mlflow unreachable") == 1 and "mlflow is back" in text, text
    # back while the run is live: the epochs' mirror (a background thread, which may
    # trail the last epochs on a busy machine) found it, not the end-of-run retry
    assert text.index("mlflow is back") < text.index("done:"), "back after the run"
    assert "still unreachable" not in text
    epochs = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [*range(1, 17)]
    steps, status = held_epochs(server.uri, run)
    assert steps == {k: [*range(1, 17)] for k in steps} and status == "FINISHED", steps
    from mlflow import MlflowClient

    run_id = json.loads((run / "trackers.json").read_text())["mlflow"]["run_id"]
    system = MlflowClient(server.uri).get_metric_history(
        run_id, "system/cpu_utilization_percentage"
    )
    assert any(m.timestamp / 1000 > back for m in system), "system metrics did not restart"
    # 2. down from epoch 1 to the end: the run still finishes and says what the server
    #    lacks; `rsexp resume` gives it those epochs once the server is back
    run = tmp_path / "runs" / "synthetic" / "back-later"
    cmd = Command(train_cmd(run, server.uri, tmp_path, 3, retry_s=1))
    wait_for_epoch(run, 1, cmd.proc)
    server.kill()
    text = cmd.finish()
    assert "mlflow still unreachable" in text and "rsexp resume" in text, text
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 3
    server.start()
    resumed = subprocess.run([sys.executable, "-m", "rsexp.cli", "resume", str(run)],
                             text=True, capture_output=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    steps, status = held_epochs(server.uri, run)
    assert steps == {k: [1, 2, 3] for k in steps} and status == "FINISHED", steps
    server.kill()


class PostgresCluster:
    """A PostgreSQL cluster of the test's own on a free port of 127.0.0.1 (initdb as the
    postgres user), so that it can be restarted without touching the machine's server."""

    BIN = Path("/usr/lib/postgresql/15/bin")

    def __init__(self):
        import shutil
        import tempfile

        if os.geteuid() != 0 or not (self.BIN / "initdb").is_file() or not shutil.which("runuser"):
            pytest.skip("needs root and PostgreSQL 15's initdb to run a cluster of its own")
        self.dir = Path(tempfile.mkdtemp(prefix="rsexp-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        self._pg("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")
        self.start()

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.BIN / tool), *args],
                       check=True, capture_output=True, timeout=120)  # fmt: skip

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._pg("pg_ctl", "-D", str(self.dir / "data"), "-o", opts,
                 "-l", str(self.dir / "log"), "-w", "start")  # fmt: skip

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


def test_a_database_restart_during_a_sweep_loses_no_trial(tmp_path):
    """PostgreSQL down for 4 s under a 2-worker sweep: every storage call waits it out
    (pre-ping, retries with backoff); the sweep finishes its budget without a rerun,
    each worker keeps its trial, and no trial is left RUNNING."""
    import optuna
    from optuna.trial import TrialState

    from rsexp.sweep.study import counts, storage_url

    pg = PostgresCluster()
    try:
        args = [
            sys.executable, "-m", "rsexp.cli", "sweep", "-c", CONFIG, "--trials", "4",
            "--workers", "2", "--storage", pg.url, f"data.root={tmp_path / 'data'}",
            f"train.runs_dir={tmp_path / 'runs'}", "data.num_frames=5", "data.frame_size=16",
            "data.batch_size=8", "data.synthetic.num_train=96", "data.synthetic.num_val=16",
            "data.synthetic.num_test=16", "data.synthetic.num_classes=4", "model.embed_dim=16",
            "model.depth=2", "model.temporal_depth=1", "model.num_heads=2",
            "train.threads=1", "sweep.epochs=4", "sweep.confirm_seeds=[0]",
            "sweep.heartbeat_interval=1", "sweep.grace_period=20", "sweep.pruner=none",
            "track.backends=[]",
        ]  # fmt: skip
        cmd = Command(args)
        first = tmp_path / "runs" / "synthetic" / "sweep-synthetic-tsvit" / "trial-0000"
        wait_for_epoch(first, 1, cmd.proc)
        pg.stop()
        time.sleep(4)
        pg.start()
        text = cmd.finish(timeout=600)
        assert "sweep done" in text, text
        url = storage_url(pg.url)  # the driver SQLAlchemy needs (psycopg2)
        trials = optuna.load_study(study_name="synthetic-tsvit", storage=url).get_trials()
        assert len(counts(trials)) == 4 and len(trials) == 4, [t.state for t in trials]
        assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
        assert not [t for t in trials if t.user_attrs.get("resume_of") is not None]
        # the outage reached the workers mid-trial, and they waited it out
        logs = "".join(p.read_text() for p in first.parent.glob("worker-*.log"))
        assert "unreachable" in logs and "is back after" in logs, logs[-3000:]
    finally:
        pg.stop()


def test_a_session_left_broken_by_a_dropped_connection_counts_as_the_outage():
    """Optuna's ``_get_trials`` catches a dropped connection and falls back to a second
    query on the same (now invalid) transaction: the ``PendingRollbackError`` that follows
    is the outage too (CI once saw the driver stop on it), while bad data is not."""
    import optuna
    import sqlalchemy

    from rsexp.sweep.study import _transient

    def wrapped(cause: BaseException) -> optuna.exceptions.StorageInternalError:
        try:
            raise optuna.exceptions.StorageInternalError("invalid data in the commit") from cause
        except optuna.exceptions.StorageInternalError as e:
            return e

    dropped = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed"))
    assert _transient(wrapped(sqlalchemy.exc.PendingRollbackError("rollback first")))
    assert _transient(wrapped(dropped))
    bad = sqlalchemy.exc.DataError("INSERT", {}, Exception("value too long"))
    assert not _transient(wrapped(bad))
