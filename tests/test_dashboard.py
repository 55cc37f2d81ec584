"""``make dashboard``: the MLflow UI and optuna-dashboard on 127.0.0.1 serve the
experiment (on its model-training views) and the study; Ctrl-C stops both."""

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
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image

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


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``dashboards/serve.py`` on free ports over an MLflow store holding a sweep trial's
    run (``trial-0001``, with ``loss/spatial``) and a 2-trial study; yields
    ``(urls, run_id)``; Ctrl-C at the end, and both servers must be gone. Started once
    for this file's tests (the servers take ~15 s to answer)."""
    from rsexp.track.base import RunInfo
    from rsexp.track.mlflow_writer import MlflowWriter

    tmp_path = tmp_path_factory.mktemp("served")
    runs = tmp_path / "runs"
    writer = MlflowWriter(f"sqlite:///{runs / 'mlflow.db'}", "", runs)
    tags = {"dataset": "synthetic", "stage": "trial", "sweep": "synthetic-tsvit"}
    run_id = writer.start(RunInfo(tmp_path, "trial-0001", "synthetic", tags))
    for epoch in (1, 2):
        writer.log_metrics({"loss/spatial": 0.5 / epoch, "val/top1": 30.0 * epoch}, epoch)
    writer.finish("FINISHED")
    # a real run's attention overlays (8-frame clips) in the same store, the newest run
    from conftest import TINY

    from rsexp.config import load_config
    from rsexp.experiment import train

    over = [
        *TINY,
        f"data.root={tmp_path / 'data'}",
        f"train.runs_dir={runs}",
        "data.num_frames=8",
        "track.backends=[mlflow]",
        "track.overlays.num_clips=2",
    ]
    train(load_config(str(ROOT / "sweeps" / "synthetic.yaml"), over))
    storage = f"sqlite:///{runs / 'synthetic' / 'optuna.db'}"
    (runs / "synthetic").mkdir(exist_ok=True)
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
        yield urls, run_id
    finally:
        proc.send_signal(signal.SIGTERM)  # a plain kill of serve.py (Ctrl-C is the same path)
        out, _ = proc.communicate(timeout=60)
    assert "dashboards stopped" in out
    for port in ports:  # both servers are gone
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0


def test_a_taken_port_is_refused_not_served_stale(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "mlflow.db").write_bytes(b"")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, str(ROOT / "dashboards" / "serve.py"), "--runs",
             str(tmp_path / "runs"), "--mlflow-port", str(port)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode != 0 and f"port {port} on 127.0.0.1 is taken" in done.stderr
    assert "http://" not in done.stdout


def test_dashboard_serves_mlflow_and_optuna_and_stops_on_sigterm(served):
    urls, run_id = served
    mlflow_url, optuna_url = urls["MLflow"], urls["optuna-dashboard"]
    assert mlflow_url.startswith("http://127.0.0.1:") and optuna_url.startswith(
        "http://127.0.0.1:"
    )
    exps = get_json(f"{mlflow_url}/api/2.0/mlflow/experiments/search", {"max_results": 10})[
        "experiments"
    ]
    (exp,) = [e for e in exps if e["name"] == "synthetic"]
    tags = {t["key"]: t["value"] for t in exp.get("tags", [])}
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # not GenAI pages
    assert urls["MLflow runs"] == (
        f"{mlflow_url}/#/experiments/{exp['experiment_id']}?workflowType=machine_learning"
    )
    found = get_json(
        f"{mlflow_url}/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]]}
    )["runs"]
    assert "loss/spatial" in [m["key"] for m in found[0]["data"]["metrics"]]
    studies = get_json(f"{optuna_url}/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["synthetic-tsvit"]


def page_text(url: str, screenshot: Path | None = None) -> str:
    """The page's visible text once its scripts have run, in headless Chromium; with
    ``screenshot``, a 1400x900 PNG of it as well."""
    base = [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
            "--window-size=1400,900", "--virtual-time-budget=12000"]  # fmt: skip
    if screenshot is not None:
        subprocess.run(
            [*base, f"--screenshot={screenshot}", url], capture_output=True, timeout=180
        )
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    text = re.sub(r"<style[^<]*</style>|<script[^<]*</script>", " ", dom.stdout)
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="needs Debian's chromium (make test installs it with apt-get when run as root)",
)
def test_dashboards_render_in_a_real_browser(served, tmp_path):
    """What a user sees: the link serve.py prints opens the experiment on its training
    runs view (not the GenAI pages) listing the trial; the trial's page shows its
    loss/spatial metric; optuna-dashboard lists the study. Screenshots kept in tmp_path."""
    urls, run_id = served
    runs_view = page_text(urls["MLflow runs"], tmp_path / "mlflow-runs.png")
    assert "trial-0001" in runs_view and "matching run" in runs_view, runs_view[-1500:]
    assert "Traces 0" not in runs_view  # the GenAI overview would show its trace counters
    run_page = urls["MLflow runs"].replace("?", f"/runs/{run_id}?")
    assert "loss/spatial" in page_text(run_page, tmp_path / "mlflow-run.png")
    # the newest run's overlay, full size at the link's first view: its 8 frames in a
    # grid of 160-px tiles with the guidance cells in green (0, 255, 0) on the screen
    overlay = urls["MLflow latest overlay"]
    assert "overlay~val_00000+step+2+" in overlay  # the first clip at the last epoch
    text = page_text(overlay, tmp_path / "mlflow-overlay.png")
    assert "images/overlay~val_00000+step+2" in text and "config.yaml" in text, text[-1500:]
    shot = np.asarray(Image.open(tmp_path / "mlflow-overlay.png").convert("RGB"))
    green = (shot[..., 0] < 40) & (shot[..., 1] > 215) & (shot[..., 2] < 40)
    rows, cols = np.nonzero(green)
    assert green.sum() > 2000, green.sum()  # the outlines of the guidance cells
    # guidance cells in frames 1 to 4 (tiles 137 px apart at 1400 px) and in both rows
    assert cols.max() - cols.min() > 250 and rows.max() - rows.min() > 120
    studies = page_text(urls["optuna-dashboard studies"], tmp_path / "optuna.png")
    assert "synthetic-tsvit" in studies, studies[-1500:]
    for name in ("mlflow-runs.png", "mlflow-run.png", "mlflow-overlay.png", "optuna.png"):
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, name


def test_wandb_workspace_spec_names_only_keys_a_real_run_records(tiny, tmp_path, monkeypatch):
    """make wandb-dashboard offline: the workspace and report spec as JSON; every metric,
    config and media key a panel names is one a real (offline W&B) run recorded, so a
    renamed metric fails here, not in the dashboard."""
    import importlib.util

    from wandb_records import config_updates, finished

    from rsexp.config import load_config
    from rsexp.experiment import train

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", os.devnull)
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = load_config(
        ROOT / "sweeps" / "synthetic.yaml",
        [*tiny, "track.backends=[wandb]", "track.overlays.num_clips=2"],
    )
    run = train(cfg).run_dir
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "table1.md").write_text("| Method | Top-1 |\n|---|---|\n| TSViT + RS | 80.00 |\n")
    spec_path = ROOT / "dashboards" / "wandb_dashboard.py"
    mod_spec = importlib.util.spec_from_file_location("wandb_dashboard", spec_path)
    dash = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(dash)
    out = tmp_path / "spec.json"
    argv = ["--runs", str(tmp_path / "runs"), "--tables", str(reports), "--out", str(out)]
    assert dash.main(argv) == 0  # not logged in: the spec, not an upload
    spec = json.loads(out.read_text())

    metrics = {k for line in (run / "metrics.jsonl").read_text().splitlines()
               for k in json.loads(line)}  # fmt: skip
    params = set(json.loads((run / "params.json").read_text()))
    overlays = {f"overlay/{p.name}" for p in (run / "overlays").iterdir()}
    (offline,) = (run / "wandb").glob("offline-run-*")
    (history,) = offline.glob("run-*.wandb")
    raw = finished(history)
    keys = spec["keys"]
    assert set(keys["metrics"]) <= metrics, set(keys["metrics"]) - metrics
    assert set(keys["config"]) <= params, set(keys["config"]) - params
    assert set(keys["media"]) == overlays and len(overlays) == 2
    for k in [*keys["metrics"], *keys["media"]]:
        assert k.encode() in raw, k  # and W&B received it under that name
    # the config is nested as the YAML is; W&B names loss: {lambda_s} loss.lambda_s

    config = dict(config_updates(history))
    for k in keys["config"]:
        node = config
        for part in k.split("."):
            assert isinstance(node, dict) and part in node, k
            node = node[part]
    types = {p["type"] for s in spec["workspace"]["sections"] for p in s["panels"]}
    assert {"LinePlot", "MediaBrowser", "ParallelCoordinatesPlot",
            "ParameterImportancePlot"} <= types  # fmt: skip
    names = [s["name"] for s in spec["workspace"]["sections"]]
    assert names[0] == "Fig. 5: losses by epoch" and "Sweep" in names
    blocks = spec["report"]["blocks"]
    assert any("TSViT + RS | 80.00" in b.get("text", "") for b in blocks)
