"""``make dashboard``: the MLflow UI on the embedded store and optuna-dashboard on a
sweep's storage, both bound to 127.0.0.1; prints each URL as soon as its server answers,
and stops both on Ctrl-C, SIGTERM (a plain ``kill``) or SIGHUP (a closed terminal). A
port already taken is refused at once, naming it.

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
import urllib.parse
import urllib.request
from pathlib import Path

from rsexp.track.mlflow_writer import image_step

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


def port_taken(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


def start(runs: Path, storage: str, mlflow_port: int, optuna_port: int, announce=print) -> list:
    """Both servers, each announced (``announce(name, url)``) as soon as it answers:
    [(name, url, process)]."""
    store = runs.resolve() / "mlflow.db"
    if not store.is_file():
        raise SystemExit(f"{store}: no MLflow store yet; run make train or make sweep first")
    host = "127.0.0.1"
    for name, port, flag in (("MLflow", mlflow_port, "--mlflow-port"),
                             ("optuna-dashboard", optuna_port, "--optuna-port")):  # fmt: skip
        if port_taken(host, port):
            raise SystemExit(
                f"port {port} on {host} is taken (another {name}, or another program): "
                f"stop it, or give {flag} <free port>"
            )
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
        for name, url, proc in servers:
            wait_ready(url, proc)
            announce(name, url)
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
    exps = _api(urls["MLflow"], "experiments/search", {"max_results": 1000})
    found = [e["experiment_id"] for e in exps.get("experiments", []) if e["name"] == experiment]
    if found:
        out["MLflow runs"] = (
            f"{urls['MLflow']}/#/experiments/{found[0]}?workflowType=machine_learning"
        )
        overlay = latest_overlay(urls["MLflow"], found[0])
        if overlay is not None:
            run_id, path = overlay
            out["MLflow latest overlay"] = (
                f"{urls['MLflow']}/#/experiments/{found[0]}/runs/{run_id}/artifacts/"
                f"{urllib.parse.quote(path, safe='/~+')}?workflowType=machine_learning"
            )
    out["optuna-dashboard studies"] = f"{urls['optuna-dashboard']}/dashboard"
    return out


def _api(base: str, endpoint: str, body: dict | None = None, query: str = "") -> dict:
    url = f"{base}/api/2.0/mlflow/{endpoint}{'?' + query if query else ''}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def latest_overlay(base: str, experiment_id: str) -> tuple[str, str] | None:
    """(run id, artifact path) of the newest run's attention overlay at its last step:
    the Artifacts tab shows it full size (the Model metrics tab's image card puts the
    run's params above its thumbnail)."""
    runs = _api(base, "runs/search", {"experiment_ids": [experiment_id], "max_results": 20,
                                      "order_by": ["attributes.start_time DESC"]})  # fmt: skip
    for run in runs.get("runs", []):
        run_id = run["info"]["run_id"]
        query = urllib.parse.urlencode({"run_id": run_id, "path": "images"})
        files = _api(base, "artifacts/list", query=query).get("files", [])
        steps = []
        for f in files:
            found = image_step(f["path"])
            if found is not None and found[0].startswith("overlay/val_"):
                steps.append((found[0], -found[1], f["path"]))
        if steps:  # the first clip, its last step
            return run_id, min(steps)[2]
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs", help="the runs folder (its mlflow.db)")
    p.add_argument("--dataset", default="synthetic", help="the experiment to link to")
    p.add_argument("--storage", default=None, help="default: sqlite:///<runs>/<dataset>/optuna.db")
    p.add_argument("--mlflow-port", type=int, default=5000)
    p.add_argument("--optuna-port", type=int, default=8080)
    args = p.parse_args(argv)
    runs = Path(args.runs)
    storage = args.storage or f"sqlite:///{(runs / args.dataset / 'optuna.db').resolve()}"

    def stop_on(signum, frame):  # a plain kill or a closed terminal takes the Ctrl-C path
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on)
    signal.signal(signal.SIGHUP, stop_on)
    servers = []
    try:
        servers = start(runs, storage, args.mlflow_port, args.optuna_port,
                        lambda name, url: print(f"{name:<22} {url}", flush=True))  # fmt: skip
        urls = {n: u for n, u, _ in servers}
        urls.update(views(urls, args.dataset))
        for name in ("MLflow runs", "optuna-dashboard studies"):
            if name in urls:
                print(f"{name:<22} {urls[name]}", flush=True)
        print(json.dumps(urls), flush=True)
        print("Ctrl-C stops both", flush=True)
        while all(proc.poll() is None for _, _, proc in servers):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop(servers)
    print("dashboards stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
