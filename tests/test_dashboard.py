"""``make dashboard``: the MLflow UI and optuna-dashboard on 127.0.0.1 serve the
experiment (on its model-training views) and the study; Ctrl-C stops both."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, data: dict | None = None):
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_dashboard_serves_mlflow_and_optuna_and_stops_on_ctrl_c(tmp_path):
    from rsexp.track.base import RunInfo
    from rsexp.track.mlflow_writer import MlflowWriter

    runs = tmp_path / "runs"
    writer = MlflowWriter(f"sqlite:///{runs / 'mlflow.db'}", "", runs)
    writer.start(RunInfo(tmp_path, "run-1", "synthetic", {"dataset": "synthetic"}))
    writer.log_metrics({"loss/spatial": 0.5}, 1)
    writer.finish("FINISHED")
    storage = f"sqlite:///{runs / 'synthetic' / 'optuna.db'}"
    (runs / "synthetic").mkdir()
    study = optuna.create_study(study_name="synthetic-tsvit", storage=storage)
    study.optimize(lambda t: t.suggest_float("tau", 0.5, 4.0), n_trials=2)
    ports = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "dashboards" / "serve.py"), "--runs", str(runs),
         "--mlflow-port", str(ports[0]), "--optuna-port", str(ports[1])],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        urls = None
        deadline = time.time() + 180
        while time.time() < deadline and urls is None:
            line = proc.stdout.readline()
            if line.startswith("{"):
                urls = json.loads(line)
            assert line or proc.poll() is None, "serve.py exited"
        assert urls == {
            "MLflow": f"http://127.0.0.1:{ports[0]}",
            "optuna-dashboard": f"http://127.0.0.1:{ports[1]}",
        }
        exps = get_json(
            f"{urls['MLflow']}/api/2.0/mlflow/experiments/search", {"max_results": 10}
        )["experiments"]
        (exp,) = [e for e in exps if e["name"] == "synthetic"]
        tags = {t["key"]: t["value"] for t in exp.get("tags", [])}
        assert tags["mlflow.experimentKind"] == "custom_model_development"  # not GenAI pages
        found = get_json(
            f"{urls['MLflow']}/api/2.0/mlflow/runs/search",
            {"experiment_ids": [exp["experiment_id"]]},
        )["runs"]
        assert "loss/spatial" in [m["key"] for m in found[0]["data"]["metrics"]]
        studies = get_json(f"{urls['optuna-dashboard']}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["synthetic-tsvit"]
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        out, _ = proc.communicate(timeout=60)
    assert "dashboards stopped" in out
    for port in ports:  # both servers are gone
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
