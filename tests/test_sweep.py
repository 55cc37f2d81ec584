"""Sweeps: every shipped config, a CLI sweep, parallel workers (SQLite, PostgreSQL), a
killed worker's trial re-run in the same tracked run, interrupt + rerun = exact budget."""

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
from optuna.trial import TrialState

from rsexp.cli import main
from rsexp.config import load_config
from rsexp.sweep import space as sp
from rsexp.sweep.study import counts, make_sampler

ROOT = Path(__file__).resolve().parent.parent
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))
CONFIG = str(ROOT / "sweeps" / "synthetic.yaml")
FAST = [
    "sweep.epochs=2",
    "sweep.confirm_seeds=[0,1]",
    "sweep.ablation_seeds=[0]",
    "sweep.heartbeat_interval=1",
    "sweep.grace_period=3",
]


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_every_sweep_config_builds_its_space_and_samples_a_trial(path):
    cfg = load_config(path)
    sp.check_space(cfg)  # every bounding point of the space is a config the run takes
    study = optuna.create_study(sampler=make_sampler(cfg), direction=cfg.sweep.direction)
    trial = study.ask()
    trial_cfg = sp.suggest(trial, cfg)
    seg = trial_cfg.loss.segments
    assert 0 < seg.immediate < 0.5 and 0 < seg.contextual <= 1 - 2 * seg.immediate + 1e-9
    assert cfg.sweep.space["coverage"].low <= trial_cfg.guidance.coverage
    assert trial_cfg.guidance.coverage <= cfg.sweep.space["coverage"].high
    # the same seed samples the same first trial; its params make the same config again
    again = optuna.create_study(sampler=make_sampler(cfg), direction=cfg.sweep.direction)
    assert sp.suggest(again.ask(), cfg) == trial_cfg
    assert sp.suggest(optuna.trial.FixedTrial(trial.params), cfg) == trial_cfg


def test_paper_coverage_per_dataset():
    cov = {p.stem: load_config(p).guidance.coverage for p in SWEEPS}
    assert cov["ucf50"] == cov["ucf101"] == 0.6 and cov["ssv2"] == 0.1


def test_the_base_settings_round_trip_through_trial_params():
    cfg = load_config(CONFIG)
    study = optuna.create_study()
    study.enqueue_trial(sp.trial_params(sp.values_of(cfg), cfg.sweep.space))
    trial = study.ask()
    assert sp.sample(trial, cfg.sweep.space) == pytest.approx(sp.values_of(cfg))
    assert sp.suggest(optuna.trial.FixedTrial(trial.params), cfg) == cfg


def test_missing_real_dataset_stops_with_instructions(tmp_path, capsys):
    code = main(
        [
            "sweep",
            "--config",
            str(ROOT / "sweeps" / "ucf50.yaml"),
            f"data.root={tmp_path}",
            f"train.runs_dir={tmp_path / 'runs'}",
        ]
    )
    err = capsys.readouterr().err.replace("\n", "")
    assert code == 2
    assert f"{tmp_path}/ucf50" in err and "UCF50.rar" in err and "guidance.json" in err
    assert not (tmp_path / "runs").exists()  # stopped before creating anything


def md_rows(path: Path) -> list[list[str]]:
    """A Markdown table's body rows, cells stripped of bold."""
    lines = [x for x in path.read_text().splitlines() if x.startswith("| ")][1:]
    rows = [[c.strip().replace("**", "") for c in x.strip("|").split("|")] for x in lines]
    return [r for r in rows if set(r) != {"---"}]


def study_of(tmp_path, storage=None, name="synthetic-tsvit"):
    url = storage or f"sqlite:///{(tmp_path / 'runs' / 'synthetic' / 'optuna.db').resolve()}"
    return optuna.load_study(study_name=name, storage=url)


def test_cli_sweep_three_trials(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "--config", CONFIG, "--trials", "3", *tiny, *FAST]) == 0
    study = study_of(tmp_path)
    trials = study.get_trials()
    assert len(counts(trials)) == 3
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    first = trials[0].user_attrs["values"]
    assert first == pytest.approx(sp.values_of(load_config(CONFIG)))  # paper defaults first
    assert study.user_attrs["optuna_version"] == optuna.__version__
    assert study.user_attrs["sampler"]["name"] == "tpe"
    for t in trials:
        run_dir = Path(t.user_attrs["run_dir"])
        assert (run_dir / "metrics.jsonl").is_file()
        assert (
            t.user_attrs["mlflow_run_id"]
            == json.loads((run_dir / "trackers.json").read_text())["mlflow"]["run_id"]
        )
    comparison = (
        tmp_path / "runs" / "synthetic" / "sweep-synthetic-tsvit" / "reports" / "comparison.md"
    ).read_text()
    assert "| TSViT |" in comparison and "| TSViT + RS |" in comparison and "±" in comparison
    ablation = (
        tmp_path / "runs" / "synthetic" / "sweep-synthetic-tsvit" / "reports" / "ablation.md"
    ).read_text()
    for row in ("CE only", "+ spatial", "+ temporal", "+ both"):
        assert f"| {row} |" in ablation
    assert (
        "\\toprule"
        in (
            tmp_path
            / "runs"
            / "synthetic"
            / "sweep-synthetic-tsvit"
            / "reports"
            / "comparison.tex"
        ).read_text()
    )
    # MLflow: one parent run per sweep; trials and confirmation runs are its children
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("synthetic")
    runs = client.search_runs([exp.experiment_id])
    parent = study.user_attrs["mlflow_parent_run_id"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]
    stages = sorted(r.data.tags["stage"] for r in children)
    confirm_dirs = list(
        (tmp_path / "runs" / "synthetic" / "sweep-synthetic-tsvit" / "confirm").iterdir()
    )
    # baseline and best x 2 seeds, the ablation rows x 1 seed; identical runs are shared
    assert 5 <= len(confirm_dirs) <= 7
    assert stages.count("trial") == 3 and stages.count("confirm") == len(confirm_dirs)
    assert {r.data.tags["sweep"] for r in children} == {"synthetic-tsvit"}
    assert client.get_run(parent).info.status == "FINISHED"
    # every confirmation run gets numbers of its own (the tiny runs all score alike),
    # in its folder and in MLflow; the sweep's tables are then written again from them
    for i, d in enumerate(sorted(confirm_dirs)):
        summary = json.loads((d / "summary.json").read_text())
        mlflow_id = json.loads((d / "trackers.json").read_text())["mlflow"]["run_id"]
        new = {"test/top1": 20.0 + 7.0 * i, "test/top5": 60.0 + 3.0 * i,
               "test/clip_loss": 2.0 - 0.1 * i}  # fmt: skip
        summary.update(new)
        (d / "summary.json").write_text(json.dumps(summary))
        for k, v in new.items():
            client.log_metric(mlflow_id, k, v, step=1000)
    # running the same command again continues the finished study: no new trial
    assert main(["sweep", "--config", CONFIG, "--trials", "3", *tiny, *FAST]) == 0
    assert len(study_of(tmp_path).get_trials()) == len(trials)
    # `rsexp tables` over the runs folder and over the MLflow store gives the sweep's own
    # comparison and ablation numbers (the ablation's runs are not pooled into + RS)
    reports = tmp_path / "runs" / "synthetic" / "sweep-synthetic-tsvit" / "reports"
    own = {r[1]: r[2:] for r in md_rows(reports / "comparison.md")}
    own_ablation = {r[2]: r[3:] for r in md_rows(reports / "ablation.md")}
    assert set(own) == {"TSViT", "TSViT + RS"} and len(own_ablation) == 4
    for source in (str(tmp_path / "runs"), f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"):
        out = tmp_path / f"tables-{len(source)}"
        assert main(["tables", "--source", source, "--out", str(out)]) == 0
        table1 = {r[1]: r[2:] for r in md_rows(out / "table1.md")}
        for label, cells in own.items():
            assert table1[label] == cells, (source, label, table1)
        assert {"TSViT + spatial", "TSViT + temporal"} <= set(table1)  # rows of their own
        ablation = {r[2]: r[3:] for r in md_rows(out / "ablation.md")}
        assert ablation == own_ablation, source
    # Fig. 5 of the confirmation runs (no validation split): four panels with curves,
    # accuracy is training accuracy with the test point, no band below zero
    from rsexp.report.collect import collect
    from rsexp.report.figures import fig5_data

    panels = fig5_data([r for r in collect(str(tmp_path / "runs")) if r.stage == "confirm"])
    (panels,) = panels.values()
    assert len(panels) == 4 and all(panels.values()), panels.keys()
    (acc,) = [t for t in panels if t.startswith("Accuracy")]
    assert "train top-1" in acc and all(c.point is not None for c in panels[acc])
    for curves in panels.values():
        assert len({c.label for c in curves}) == len(curves) == len(table1)
        for c in curves:
            assert len(c.x) == 2 and (c.low >= 0).all() and (c.low <= c.mean).all()


def _postgres_url() -> str:
    try:
        import psycopg2
    except ImportError:
        pytest.skip("psycopg2 is not installed (dev extra)")
    name = f"rsexp_test_{uuid.uuid4().hex[:8]}"
    try:
        conn = psycopg2.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3
        )
    except psycopg2.OperationalError as e:
        pytest.skip(f"no PostgreSQL server reachable on 127.0.0.1:5432 ({e})")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_share_one_study(tiny, tmp_path, monkeypatch, backend):
    monkeypatch.chdir(tmp_path)
    storage = _postgres_url() if backend == "postgresql" else None
    args = [
        "sweep",
        "--config",
        CONFIG,
        "--trials",
        "4",
        "--workers",
        "2",
        *tiny,
        *FAST,
        "track.backends=[]",
    ]
    assert main([*args, *(["--storage", storage] if storage else [])]) == 0
    trials = study_of(tmp_path, storage).get_trials()
    assert len(counts(trials)) == 4
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) >= 4
    logs = list((tmp_path / "runs" / "synthetic" / "sweep-synthetic-tsvit").glob("worker-*.log"))
    assert len(logs) == 2
    # both workers took trials
    took = [
        log.read_text().count("finished with value") + log.read_text().count("pruned")
        for log in logs
    ]
    assert all(n >= 1 for n in took), took


def _wait_for(predicate, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail("timed out")


SLOW = ["data.synthetic.num_train=96", "sweep.epochs=6"]


def test_killed_worker_trial_is_rerun_in_the_same_tracked_run(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    over = [*tiny, *FAST, *SLOW, "sweep.trials=1"]
    url = f"sqlite:///{(tmp_path / 'runs' / 'synthetic' / 'optuna.db')}"
    (tmp_path / "runs" / "synthetic").mkdir(parents=True)
    # the driver prepares the study; one worker dies with SIGKILL inside trial 0
    from rsexp.sweep.study import make_storage, open_study

    cfg = load_config(CONFIG, over)
    study = open_study("synthetic-tsvit", make_storage(url, cfg), cfg, 6)
    study.enqueue_trial(sp.trial_params(sp.values_of(cfg), cfg.sweep.space))
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rsexp.cli",
            "sweep-worker",
            "--config",
            CONFIG,
            "--study",
            "synthetic-tsvit",
            "--storage",
            url,
            *over,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run_dir = tmp_path / "runs" / "synthetic" / "sweep-synthetic-tsvit" / "trial-0000"
    from rsexp.track.local import read_metrics

    _wait_for(lambda: len(read_metrics(run_dir)) >= 2)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    mlflow_id = json.loads((run_dir / "trackers.json").read_text())["mlflow"]["run_id"]
    time.sleep(4)  # past the grace period: the trial's heartbeat is stale
    assert main(["sweep", "--config", CONFIG, *over]) == 0
    trials = study_of(tmp_path, url).get_trials()
    assert trials[0].state == TrialState.FAIL  # the dead worker's trial
    retry = trials[1]
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["run_dir"] == str(run_dir)
    assert retry.user_attrs["mlflow_run_id"] == mlflow_id
    assert len(counts(trials)) == 1
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    steps = [m.step for m in client.get_metric_history(mlflow_id, "val/top1")]
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    assert client.get_run(mlflow_id).info.status == "FINISHED"


def test_interrupt_and_rerun_finishes_exactly_the_budget(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    over = [*tiny, *FAST, *SLOW, "sweep.trials=2", "sweep.pruner=none", "track.backends=[]"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rsexp.cli", "sweep", "--config", CONFIG, *over],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, "COLUMNS": "120"},
    )
    first = tmp_path / "runs" / "synthetic" / "sweep-synthetic-tsvit" / "trial-0000"
    from rsexp.track.local import read_metrics

    _wait_for(lambda: len(read_metrics(first)) >= 2)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the driver and its workers
    proc.wait(timeout=120)
    assert proc.returncode != 0
    trials = study_of(tmp_path).get_trials()
    assert trials[0].user_attrs.get("interrupted") and trials[0].state == TrialState.FAIL
    assert main(["sweep", "--config", CONFIG, *over]) == 0
    trials = study_of(tmp_path).get_trials()
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(counts(trials)) == 2 and len(finished) == 2
    resumed = [t for t in finished if t.user_attrs.get("resume_of") == 0]
    assert len(resumed) == 1 and resumed[0].user_attrs["run_dir"] == str(first)
    assert [r["epoch"] for r in read_metrics(first)] == [1, 2, 3, 4, 5, 6]


def test_a_sweep_whose_trials_all_fail_the_same_way_stops_and_says_why(
    tiny, tmp_path, monkeypatch, capsys
):
    """Every trial hits the same error (here: a learning rate that blows the weights up
    at the first step): the sweep stops after sweep.stop_after_failures of them instead
    of spending its budget. (A wrong setting the config can tell, e.g. weights for the
    wrong model, stops the sweep before its first trial: tests/test_train.py.)"""
    monkeypatch.chdir(tmp_path)
    bad = [*tiny, *FAST, "track.backends=[local]", "optim.lr=1e30", "optim.warmup_epochs=0"]
    code = main(
        ["sweep", "--config", CONFIG, "--trials", "6", *bad, "sweep.stop_after_failures=2"]
    )
    assert code == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "stopped before its budget" in err and "non-finite loss" in err
    trials = study_of(tmp_path).get_trials()
    assert len(trials) == 2 and all(t.state == TrialState.FAIL for t in trials)
    assert all("non-finite loss" in t.user_attrs["fail_reason"] for t in trials)
    # each failed trial's run folder says so too
    for t in trials:
        summary = json.loads((Path(t.user_attrs["run_dir"]) / "summary.json").read_text())
        assert summary["status"] == "failed" and "non-finite loss" in summary["error"]


def test_any_config_key_is_a_search_dimension(tiny, tmp_path, monkeypatch, capsys):
    """optim.lr and model.attn_layer beside the paper's knobs: each trial's own
    config.yaml holds its sampled values, and Optuna names them by their keys; a key
    that is not a setting, a type the key cannot take, and a range that leaves the key's
    rules are refused before anything exists, each naming the key."""
    monkeypatch.chdir(tmp_path)
    space = ["sweep.space.optim.lr={low: 0.0003, high: 0.003, log: true}",
             "sweep.space.model.attn_layer={choices: [-1, -2]}"]  # fmt: skip
    for bad, said in (
        ("sweep.space.optim.lrr={low: 0.1, high: 1}", "unknown config key 'optim.lrr'"),
        ("sweep.space.model.attn_layer={low: -1.5, high: -1}", "is an integer setting"),
        ("sweep.space.model.depth={low: 0, high: 2}", "model.depth: must be >= 1"),
    ):
        assert main(["sweep", "--config", CONFIG, *tiny, *FAST, bad]) == 2, bad
        err = " ".join(capsys.readouterr().err.split())
        assert said in err and bad.split("=")[0].removeprefix("sweep.space.") in err, err
    assert not (tmp_path / "runs").exists()
    args = ["sweep", "--config", CONFIG, "--trials", "2", "--trials-only", *tiny, *FAST,
            "sweep.epochs=1", "track.backends=[]", *space]  # fmt: skip
    assert main(args) == 0
    study = study_of(tmp_path)
    assert study.metric_names == ["val/top1"]  # optuna-dashboard says what it optimises
    for t in study.get_trials():
        assert {"optim.lr", "model.attn_layer"} <= set(t.params)
        cfg = load_config(Path(t.user_attrs["run_dir"]) / "config.yaml")
        assert cfg.optim.lr == pytest.approx(t.params["optim.lr"])
        assert cfg.model.attn_layer == t.params["model.attn_layer"]
        assert cfg.loss.lambda_s == (0 if t.params.get("lambda_s_off") else
                                     pytest.approx(t.params["lambda_s"]))  # fmt: skip
