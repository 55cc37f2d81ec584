"""``make dashboard``: the MLflow UI on the embedded store and optuna-dashboard on a
sweep's storage, both bound to 127.0.0.1; prints both URLs and stops both on Ctrl-C.

    python dashboards/serve.py [--runs runs] [--dataset synthetic] [--storage URL]
        [--mlflow-port 5000] [--optuna-port 8080]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited ({proc.returncode}) before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def start(runs: Path, storage: str, mlflow_port: int, optuna_port: int) -> list:
    """Both servers, once they answer: [(name, url, process)]."""
    store = runs.resolve() / "mlflow.db"
    if not store.is_file():
        raise SystemExit(f"{store}: no MLflow store yet; run make train or make sweep first")
    host = "127.0.0.1"
    mlflow = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{store}",
         "--host", host, "--port", str(mlflow_port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    optuna = subprocess.Popen(
        [str(BIN / "optuna-dashboard"), storage, "--host", host, "--port", str(optuna_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    servers = [
        ("MLflow", f"http://{host}:{mlflow_port}", mlflow),
        ("optuna-dashboard", f"http://{host}:{optuna_port}", optuna),
    ]
    try:
        for _, url, proc in servers:
            wait_ready(url, proc)
    except BaseException:
        stop(servers)
        raise
    return servers


def stop(servers) -> None:
    for _, _, proc in servers:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for _, _, proc in servers:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def views(urls: dict[str, str], experiment: str) -> dict[str, str]:
    """Direct links: the experiment's runs view and the study. MLflow 3.17's UI opens on
    its GenAI pages unless the URL asks for the model-training workflow
    (``workflowType=machine_learning``; the experiment's ``mlflow.experimentKind`` tag
    alone is not enough when the UI's workflow switch is on)."""
    out = {}
    body = json.dumps({"max_results": 1000}).encode()
    req = urllib.request.Request(
        f"{urls['MLflow']}/api/2.0/mlflow/experiments/search",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        exps = json.loads(r.read()).get("experiments", [])
    found = [e["experiment_id"] for e in exps if e["name"] == experiment]
    if found:
        out["MLflow runs"] = (
            f"{urls['MLflow']}/#/experiments/{found[0]}?workflowType=machine_learning"
        )
    out["optuna-dashboard studies"] = f"{urls['optuna-dashboard']}/dashboard"
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs")
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--storage", default=None, help="default: sqlite:///<runs>/<dataset>/optuna.db")
    p.add_argument("--mlflow-port", type=int, default=5000)
    p.add_argument("--optuna-port", type=int, default=8080)
    args = p.parse_args(argv)
    runs = Path(args.runs)
    storage = args.storage or f"sqlite:///{(runs / args.dataset / 'optuna.db').resolve()}"
    servers = start(runs, storage, args.mlflow_port, args.optuna_port)
    urls = {n: u for n, u, _ in servers}
    urls.update(views(urls, args.dataset))
    for name, url in urls.items():
        print(f"{name:<22} {url}")
    print(json.dumps(urls), flush=True)
    print("Ctrl-C stops both", flush=True)
    try:
        while all(proc.poll() is None for _, _, proc in servers):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop(servers)
    print("dashboards stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
