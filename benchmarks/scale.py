"""How far does one study's PostgreSQL storage scale with sweep workers?

Simulated workers (spawned processes, as ``rsexp sweep`` starts them) share one study
opened the way rsexp's workers open it: :func:`rsexp.sweep.study.make_storage` (RDB
storage with heartbeats, every call retried through an outage) and
:func:`~rsexp.sweep.study.open_study` (the sweep's per-trial-seeded multivariate TPE
with constant liar, the median pruner), the search space of ``sweeps/synthetic.yaml``
and rsexp's budget rule (a trial started once the budget is used is marked surplus and
stops its worker). The objective is trivial (two reported "epochs" of a closed-form
score), so what is measured is the storage and the sampler: trials/s over the whole
budget, the time a trial spends in storage calls, the database connections open at
once, the budget overshoot, trials with duplicated params, and trials left RUNNING.

    python benchmarks/scale.py [--workers 1,4,16,32] [--trials 100]
        [--storage postgresql://postgres@127.0.0.1:5432/postgres]

Each setting gets a database of its own on the server (created and dropped). The
figures go to ``benchmarks/scale.json``; ``docs/scale.md`` reads them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "sweeps" / "synthetic.yaml"
STUDY = "scale"
HEADERS = {"workers": "workers", "budget": "budget", "trials_per_s": "trials/s",
           "wall_s": "wall s", "storage_ms_per_trial": "storage ms/trial",
           "peak_connections": "connections", "overshoot": "overshoot",
           "surplus_trials": "surplus", "duplicated_params": "duplicates",
           "stuck_running": "stuck"}  # fmt: skip


def _config(trials: int):
    from rsexp.config import load_config

    return load_config(CONFIG, [f"sweep.trials={trials}"])


def simulated_worker(url: str, trials: int, folder: str, index: int) -> None:
    """One worker (a spawned process): wait for the start, then take trials until the
    budget is used; its own figures go to ``<folder>/worker-<index>.json``."""
    import optuna

    from rsexp.sweep import space as sp
    from rsexp.sweep.study import ResilientRDBStorage, counts, make_storage, open_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spent = [0.0]  # seconds inside storage calls (each one goes through _retried)
    retried = ResilientRDBStorage._retried

    def timed(self, name, call, *args, **kwargs):
        start = time.perf_counter()
        try:
            return retried(self, name, call, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    ResilientRDBStorage._retried = timed
    cfg = _config(trials)
    study = open_study(STUDY, make_storage(url, cfg), cfg, 2)
    (Path(folder) / f"ready-{index}").touch()
    while not (Path(folder) / "go").exists():
        time.sleep(0.01)
    spent[0], done, start = 0.0, 0, time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        nonlocal done
        done += 1
        before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
        if len(counts(before)) >= trials:  # rsexp's budget rule (worker.Objective)
            trial.set_user_attr("surplus", True)
            study.stop()
            raise optuna.TrialPruned("budget used")
        v = sp.sample(trial, cfg.sweep.space)
        score = -((v["lambda_s"] - 1) ** 2) - (math.log(v["tau"]) ** 2) - v["immediate"]
        for epoch in (1, 2):
            trial.report(score * epoch / 2, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return score

    study.optimize(objective)
    wall = time.perf_counter() - start
    out = {"trials": done, "storage_s": spent[0], "wall_s": wall}
    (Path(folder) / f"worker-{index}.json").write_text(json.dumps(out))


def _pg(url: str):
    import psycopg2
    import sqlalchemy

    u = sqlalchemy.engine.make_url(url)
    conn = psycopg2.connect(host=u.host, port=u.port or 5432, user=u.username,
                            password=u.password, dbname=u.database)  # fmt: skip
    conn.autocommit = True
    return conn, u


def measure(server: str, workers: int, trials: int) -> dict:
    """One setting: ``workers`` simulated workers, one budget of ``trials``."""
    import optuna
    from optuna.trial import TrialState

    from rsexp.jobs import Job
    from rsexp.sweep.study import counts

    admin, u = _pg(server)
    db = f"rsexp_scale_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
    url = u.set(drivername="postgresql+psycopg2", database=db).render_as_string(False)
    peak, stop = [0], threading.Event()

    def count_connections() -> None:
        while not stop.is_set():
            with admin.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (db,))
                peak[0] = max(peak[0], cur.fetchone()[0])
            stop.wait(0.2)

    try:
        # the driver's part: the study exists before its workers start
        from rsexp.sweep.study import make_storage, open_study

        cfg = _config(trials)
        open_study(STUDY, make_storage(url, cfg), cfg, 2)
        with tempfile.TemporaryDirectory() as folder:
            jobs = [Job.spawn("scale:simulated_worker", (url, trials, folder, i),
                              name=f"worker {i}", log=Path(folder) / f"worker-{i}.log")
                    for i in range(workers)]  # fmt: skip
            while len(list(Path(folder).glob("ready-*"))) < workers:
                if any(j.poll() not in (None, 0) for j in jobs):
                    raise RuntimeError("a worker failed: " + "; ".join(j.reason for j in jobs))
                time.sleep(0.1)
            watcher = threading.Thread(target=count_connections, daemon=True)
            watcher.start()
            start = time.perf_counter()
            (Path(folder) / "go").touch()
            codes = [j.wait() for j in jobs]
            wall = time.perf_counter() - start
            stop.set()
            watcher.join()
            if any(codes):
                raise RuntimeError("a worker failed: " + "; ".join(j.reason for j in jobs))
            per = [json.loads((Path(folder) / f"worker-{i}.json").read_text())
                   for i in range(workers)]  # fmt: skip
        study = optuna.load_study(study_name=STUDY, storage=url)
        all_trials = study.get_trials(deepcopy=False)
        used = counts(all_trials)
        finished = [t for t in all_trials if t.number in used and t.state.is_finished()]
        params = [tuple(sorted(t.params.items())) for t in all_trials if t.number in used]
        done = sum(p["trials"] for p in per)
        return {
            "workers": workers,
            "budget": trials,
            "trials_per_s": round(len(finished) / wall, 2),
            "wall_s": round(wall, 1),
            "storage_ms_per_trial": round(1000 * sum(p["storage_s"] for p in per) / done, 1),
            "peak_connections": peak[0],
            "overshoot": len(used) - trials,
            "surplus_trials": sum(bool(t.user_attrs.get("surplus")) for t in all_trials),
            "duplicated_params": len(params) - len(set(params)),
            "stuck_running": sum(t.state == TrialState.RUNNING for t in all_trials),
        }
    finally:
        stop.set()
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.close()


def main(argv=None) -> int:
    from rich.console import Console
    from rich.table import Table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", default="1,4,16,32", help="settings, comma-separated")
    p.add_argument("--trials", type=int, default=100, help="the study's budget per setting")
    p.add_argument("--storage", default="postgresql://postgres@127.0.0.1:5432/postgres",
                   help="a PostgreSQL server (new databases are made there)")  # fmt: skip
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "scale.json"))
    args = p.parse_args(argv)
    console = Console(width=max(Console().width, 120))  # the table's 10 columns, unfolded
    rows = []
    for n in (int(w) for w in args.workers.split(",")):
        with console.status(f"{n} workers, {args.trials} trials"):
            rows.append(measure(args.storage, n, args.trials))
        console.print(rows[-1])
    table = Table(title=f"one study on PostgreSQL, budget {args.trials} trials, simulated workers")
    for col in HEADERS.values():
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(*(str(r[k]) for k in HEADERS))
    console.print(table)
    import os

    import optuna

    machine = f"{os.cpu_count()} CPU cores, optuna {optuna.__version__}"
    out = {"_date": time.strftime("%Y-%m-%d"), "_machine": machine, "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
