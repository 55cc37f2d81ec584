"""One folder, one writer; inputs never change silently; a sweep spends its budget on
valid, distinct trials and says why when it cannot. Through the commands a user types."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from rsexp.cli import main
from rsexp.track.local import read_metrics

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "sweeps" / "synthetic.yaml")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rsexp.cli", *args]


def wait_until(predicate, timeout=180):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_two_trains_on_one_folder(tiny, tmp_path, capsys):
    run = tmp_path / "runs" / "synthetic" / "r"
    slow = [*tiny, "data.synthetic.num_train=400", "train.epochs=3", "track.backends=[local]"]
    args = cli("train", "-c", CONFIG, "--run-dir", str(run), *slow)
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: (run / ".lock.owner").is_file())
    first.send_signal(signal.SIGSTOP)  # held mid-run, whatever this machine's speed
    try:
        # the second is refused at once, naming the first; it changes nothing there
        assert main(["train", "-c", CONFIG, "--run-dir", str(run), *slow]) == 2
        err = "".join(capsys.readouterr().err.split())  # rich folds long paths
        assert f"runfolder{run}isinusebypid{first.pid}" in err, err
        assert main(["resume", str(run)]) == 2  # nor can it be resumed meanwhile
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3]
    # the lock went with the process: the folder is free again
    assert main(["resume", str(run)]) == 0


def test_resume_refuses_what_would_change_the_run(tiny, tmp_path, capsys):
    run = tmp_path / "runs" / "synthetic" / "r"
    over = [*tiny, "train.epochs=2", "track.backends=[local]"]
    assert main(["train", "-c", CONFIG, "--run-dir", str(run), *over, "--until-epoch", "1"]) == 0
    changing = ["model.embed_dim=128", "loss.lambda_s=0"]
    assert main(["resume", str(run), *changing, "train.threads=1"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "model.embed_dim=128, loss.lambda_s=0 would change the run" in err, err
    assert "train.runs_dir" in err and "train.epochs=N" in err  # what it accepts
    assert [r["epoch"] for r in read_metrics(run)] == [1]  # nothing trained
    assert json.loads((run / "summary.json").read_text())["status"] == "stopped"
    # train.epochs=N works as --epochs N; a place-only setting is taken
    assert main(["resume", str(run), "train.epochs=3", "data.num_workers=0"]) == 0
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 3


def test_changed_guidance_stops_the_resume_unless_accepted(tiny, tmp_path, capsys):
    run = tmp_path / "runs" / "synthetic" / "r"
    over = [*tiny, "train.epochs=3", "track.backends=[local]"]
    assert main(["train", "-c", CONFIG, "--run-dir", str(run), *over, "--until-epoch", "1"]) == 0
    params = json.loads((run / "params.json").read_text())
    (guidance,) = (tmp_path / "data" / "synthetic").glob("*/guidance.json")
    store = json.loads(guidance.read_text())
    for frames in store.values():  # every annotated cell moved one cell to the right
        for rec in frames.values():
            regions = json.loads(rec["text"])["key_regions"]
            rec["text"] = json.dumps({"key_regions": [[r, (c + 1) % 4] for r, c in regions]})
    guidance.write_text(json.dumps(store))
    assert main(["resume", str(run)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "inputs changed since epoch 1" in err and "the guidance file" in err, err
    assert params["guidance.digest"] in err and "--accept-changed-inputs" in err
    assert [r["epoch"] for r in read_metrics(run)] == [1]
    assert main(["resume", str(run), "--accept-changed-inputs"]) == 0
    after = json.loads((run / "params.json").read_text())
    assert after["guidance.digest"] == params["guidance.digest"]  # the first epoch's, kept
    (key,) = [k for k in after if k.startswith("inputs.changed_after_epoch_1.")]
    assert key.endswith("guidance.digest") and after[key] != params["guidance.digest"]


def test_a_search_space_or_objective_the_run_refuses_stops_the_sweep_first(
    tiny, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    negative = "sweep.space.lambda_s={low: -2, high: -1, log: false}"
    assert main(["sweep", "-c", CONFIG, "--trials", "2", *tiny, negative]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "sweep.space.lambda_s: low -2" in err and "loss.lambda_s: must be >= 0" in err, err
    assert main(["sweep", "-c", CONFIG, *tiny, "sweep.objective=val/accuracy"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no run logs 'val/accuracy'" in err and "val/top1" in err, err
    assert not (tmp_path / "runs").exists()  # before any study, folder or run


def test_a_trial_whose_config_is_invalid_fails_with_its_reason(tiny, tmp_path, monkeypatch):
    """A worker given such a space (its driver on an older rsexp, say): each trial is a
    FAIL with the reason, stop_after_failures counts them, the study says why."""
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    negative = "sweep.space.lambda_s={low: -2, high: -1, log: false, allow_zero: false}"
    over = [*tiny, negative, "sweep.trials=4", "sweep.stop_after_failures=2",
            "track.backends=[local]"]  # fmt: skip
    assert main(["sweep-worker", "-c", CONFIG, "--study", "s", "--storage", storage, *over]) == 0
    study = optuna.load_study(study_name="s", storage=storage)
    trials = study.get_trials()
    assert len(trials) == 2 and all(t.state == TrialState.FAIL for t in trials)
    for t in trials:
        assert "ConfigError" in t.user_attrs["fail_reason"]
        assert "loss.lambda_s: must be >= 0" in t.user_attrs["fail_reason"]
    assert "the last 2 trials failed" in study.user_attrs["stopped"]


def test_two_drivers_of_one_study_share_it_and_draw_distinct_trials(tiny, tmp_path):
    """Two `rsexp sweep` commands on one study at once, 2 workers each, the random
    sampler: 6 trials with 6 distinct knob sets, one confirmation stage (every run once),
    one MLflow parent run; `rsexp tables` counts each seed once."""
    over = ["--trials", "6", "--workers", "2", *tiny, "sweep.epochs=1", "sweep.sampler=random",
            "sweep.pruner=none", "sweep.confirm_seeds=[0]", "train.epochs=1"]  # fmt: skip
    env = {"COLUMNS": "200"}
    procs = [
        subprocess.Popen(
            cli("sweep", "-c", CONFIG, *over),
            cwd=tmp_path,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**__import__("os").environ, **env},
        )  # fmt: skip
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    text = [" ".join(o.split()) for o in outs]
    assert sum("sweep done" in t for t in text) >= 1, text
    url = f"sqlite:///{tmp_path / 'runs' / 'synthetic' / 'optuna.db'}"
    study = optuna.load_study(study_name="synthetic-tsvit", storage=url)
    from rsexp.sweep.study import counts

    trials = study.get_trials()
    used = [t for t in trials if t.number in counts(trials)]
    assert len(used) == 6 and all(t.state == TrialState.COMPLETE for t in used)
    params = [tuple(sorted(t.params.items())) for t in used]
    assert len(set(params)) == 6, params
    root = tmp_path / "runs" / "synthetic" / "sweep-synthetic-tsvit"
    for run in (root / "confirm").iterdir():
        epochs = [r["epoch"] for r in read_metrics(run)]
        assert epochs == [1], (run, epochs)  # trained once, by one driver
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    parents = [r for r in runs if r.data.tags.get("stage") == "sweep"]
    confirms = [r for r in runs if r.data.tags.get("stage") == "confirm"]
    assert len(parents) == 1 and len(confirms) == len(list((root / "confirm").iterdir()))


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a given size under ``tmp_path`` (root only: mounting needs it)."""
    mounted = []

    def make(name: str, size: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            why = done.stderr.strip()
            pytest.skip(f"cannot mount a tmpfs here ({why}); the disk-full path is also "
                        f"tested with a failing writer (test_hardening.py)")  # fmt: skip
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def leftovers(root: Path) -> list[Path]:
    """Half-written files: temporaries, and empty files where a file was expected."""

    def empty(p: Path) -> bool:  # a lock file and a log not yet written to may be empty
        return p.stat().st_size == 0 and not p.name.endswith(".lock") and p.suffix != ".jsonl"

    return [p for p in root.rglob("*") if p.is_file() and (".tmp" in p.name or empty(p))]


def test_a_full_disk_names_the_path_and_leaves_nothing_half_written(
    tiny, tmp_path, small_disk, capsys
):
    # the data root: generating the synthetic clips does not fit
    data = small_disk("full-data", "64k")
    over = [*tiny, f"data.root={data}", "track.backends=[local]"]
    assert main(["train", "-c", CONFIG, *over]) == 2
    err = "".join(capsys.readouterr().err.split())
    assert f"nospaceleftonthedeviceof{data}" in err and "free" in err, err
    assert not leftovers(data), leftovers(data)
    # the runs folder: full after a checkpoint or two; MLflow elsewhere says failed, why
    runs = small_disk("full-runs", "600k")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    over = [
        *tiny,
        f"train.runs_dir={runs}",
        "train.epochs=30",
        f"track.mlflow.tracking_uri={store}",
    ]
    code = main(["train", "-c", CONFIG, *over])
    out = capsys.readouterr()
    text = "".join((out.out + out.err).split())
    assert code == 2 and f"nospaceleftonthedeviceof{runs}" in text, text
    assert "Traceback" not in text
    assert not leftovers(runs), leftovers(runs)
    from mlflow import MlflowClient

    (run,) = MlflowClient(store).search_runs(
        [MlflowClient(store).get_experiment_by_name("synthetic").experiment_id]
    )
    assert run.info.status == "FAILED" and "no space left" in run.data.tags["error"]
    assert run.data.tags["status"] == "failed"


def test_damaged_files_are_named_and_the_rest_goes_on(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for seed in (0, 1):
        assert (
            main(["train", "-c", CONFIG, *tiny, "track.backends=[local]", f"train.seed={seed}"])
            == 0
        )
    a, b = sorted((tmp_path / "runs" / "synthetic").iterdir())
    log = a / "metrics.jsonl"
    lines = log.read_text().splitlines()
    log.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # cut mid-line
    capsys.readouterr()
    assert main(["figures", "--source", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr()
    err = "".join(out.err.split())  # rich folds long paths
    assert f"{log},line2:notawholeJSONrecord" in err and "leftout" in err, err
    assert (tmp_path / "runs" / "figures" / "fig5_synthetic.png").is_file()
    # a truncated study database: what is wrong and what to do, not a traceback
    db = tmp_path / "optuna.db"
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{db}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    for args in (
        ["tables", "--study", "s", "--storage", f"sqlite:///{db}"],
        ["sweep", "-c", CONFIG, *tiny, "--storage", f"sqlite:///{db}", "--study", "s"],
    ):
        assert main(args) == 2, args
        err = "".join(capsys.readouterr().err.split())
        assert "thestudydatabaseisdamaged" in err and f"Move{db}aside" in err, err
        assert "Traceback" not in err


def test_workers_popping_the_trial_queue_at_once_each_take_a_different_trial(tmp_path):
    """Four workers (each its own storage, as in its own process) pop 40 queued trials of
    one SQLite study at once: every trial is taken by exactly one of them (Optuna's read-
    then-write let two take the same trial: SQLite ignores FOR UPDATE), with its start
    time recorded."""
    import threading

    from optuna.trial import TrialState

    from rsexp.config import load_config
    from rsexp.sweep.study import make_storage

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    cfg = load_config(CONFIG)
    study = optuna.create_study(storage=make_storage(url, cfg), study_name="queue")
    for i in range(40):
        study.enqueue_trial({"x": float(i)})
    stores = [make_storage(url, cfg) for _ in range(4)]
    claimed: list[int] = []
    start = threading.Barrier(len(stores))

    def pop_all(storage) -> None:
        queue = optuna.load_study(study_name="queue", storage=storage)
        start.wait()
        while (trial_id := queue._pop_waiting_trial_id()) is not None:  # what ask() does
            claimed.append(trial_id)

    threads = [threading.Thread(target=pop_all, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(t._trial_id for t in study.get_trials(deepcopy=False))
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    assert len(running) == 40 and all(t.datetime_start is not None for t in running)
