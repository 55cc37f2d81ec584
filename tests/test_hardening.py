"""Hardening: each probe of the hostile-but-realistic user review (issue 9) as a test.
Config and messages, checkpoints and resume, failures recorded everywhere, secrets."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from pathlib import Path

import pytest
import torch

from rsexp.cli import main
from rsexp.config import ConfigError, load_config
from rsexp.core.checkpoint import load_checkpoint
from rsexp.experiment import RunDir, resume, train

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "sweeps" / "synthetic.yaml")


def mlflow_status(runs_dir: Path, run_dir: Path) -> str:
    from mlflow import MlflowClient

    run_id = RunDir(run_dir).tracker_ids()["mlflow"]
    client = MlflowClient(tracking_uri=f"sqlite:///{(runs_dir / 'mlflow.db').resolve()}")
    return client.get_run(run_id).info.status


# ----------------------------------------------------------------------- values, files


@pytest.mark.parametrize(
    "override, key",
    [
        ("loss.tau=.inf", "loss.tau"),
        ("loss.lambda_s=.inf", "loss.lambda_s"),
        ("loss.lambda_t=.nan", "loss.lambda_t"),
        ("optim.lr=.inf", "optim.lr"),
    ],
)
def test_non_finite_numbers_are_rejected_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(CONFIG, [override])


def test_overlapping_segments_are_rejected():
    with pytest.raises(ConfigError, match="loss.segments: immediate 0.7 and contextual 0.6"):
        load_config(CONFIG, ["loss.segments.immediate=0.7", "loss.segments.contextual=0.6"])


def test_an_override_error_names_the_override_not_the_yaml():
    with pytest.raises(ConfigError) as e:
        load_config(CONFIG, ["loss.tau=-1"])
    assert "override loss.tau=-1" in str(e.value) and "synthetic.yaml" not in str(e.value)


def test_a_yaml_error_names_the_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("loss:\n  tau: -1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: loss\.tau"):
        load_config(path)


def test_empty_yaml_and_duplicate_keys_are_errors(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n")
    with pytest.raises(ConfigError, match=r"empty\.yaml: the file is empty"):
        load_config(empty)
    dup = tmp_path / "dup.yaml"
    dup.write_text("loss:\n  tau: 1.0\n  lambda_s: 0.5\n  tau: 2.0\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml, line 4: duplicate key 'loss\.tau'"):
        load_config(dup)


def test_runs_dir_that_is_a_file_is_a_clear_error(tiny, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    assert main(["train", "-c", CONFIG, *tiny, f"train.runs_dir={blocker}"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "train.runs_dir" in err and "not a folder" in err and "Traceback" not in err


def test_a_non_finite_loss_ends_with_a_message_not_a_traceback(tiny, capsys):
    assert main(["train", "-c", CONFIG, *tiny, "optim.lr=1e30", "track.backends=[]"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "non-finite loss at epoch" in err and "Traceback" not in err


# --------------------------------------------------------------- resume and checkpoints


def test_resume_refuses_to_shrink_a_run(tiny):
    result = train(load_config(CONFIG, [*tiny, "track.backends=[]"]))
    before = (result.run_dir / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="extend a run, not shrink it"):
        resume(result.run_dir, epochs=1)
    assert (result.run_dir / "config.yaml").read_text() == before


def test_a_folder_without_config_says_what_is_missing(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.yaml"):
        resume(tmp_path / "run")


def test_resume_by_id_finds_the_run_under_the_configured_runs_dir(tiny, tmp_path, monkeypatch):
    result = train(load_config(CONFIG, [*tiny, "track.backends=[]"]), until_epoch=1)
    monkeypatch.chdir(tmp_path)  # no ./runs here; the config names the runs folder
    args = [
        "resume",
        "--config",
        CONFIG,
        result.run_dir.name,
        f"train.runs_dir={tmp_path / 'runs'}",
    ]
    assert main(args) == 0
    assert RunDir(result.run_dir).is_finished()


def test_disk_full_while_checkpointing_fails_cleanly_and_resumes(tiny, tmp_path, monkeypatch):
    import rsexp.core.checkpoint as ck

    real_save, calls = ck.torch.save, {"n": 0}

    def full(obj, f, *a, **k):
        calls["n"] += 1
        # epoch 1 wrote best.pt once (last.pt is a second name for it); epoch 2's fails
        if calls["n"] == 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(ck.torch, "save", full)
    cfg = load_config(CONFIG, [*tiny, "train.epochs=3"])
    with pytest.raises(OSError, match="no space left on the device of .*last.pt"):
        train(cfg, run_dir=tmp_path / "runs" / "full")
    monkeypatch.setattr(ck.torch, "save", real_save)
    rd = RunDir(tmp_path / "runs" / "full")
    assert not list(rd.checkpoints.glob(".*tmp*")), "the temp file is removed"
    assert load_checkpoint(rd.last_checkpoint)["epoch"] == 1  # the previous one stays valid
    summary = rd.summary()
    assert summary["status"] == "failed" and "no space left" in summary["error"]
    assert mlflow_status(tmp_path / "runs", rd.path) == "FAILED"
    result = resume(rd.path)
    assert result.summary["status"] == "finished" and result.summary["epochs"] == 3
    best = load_checkpoint(rd.best_checkpoint)
    assert best["epoch"] == result.summary["best_epoch"]
    assert mlflow_status(tmp_path / "runs", rd.path) == "FINISHED"


def test_a_corrupt_last_checkpoint_falls_back_or_leaves_trackers_alone(tiny, tmp_path, capsys):
    cfg = load_config(CONFIG, [*tiny, "train.epochs=3"])
    part = train(cfg, run_dir=tmp_path / "runs" / "r", until_epoch=2)
    rd = RunDir(part.run_dir)
    rd.last_checkpoint.write_bytes(b"not a checkpoint")
    result = resume(rd.path)  # falls back to the previous checkpoint (epoch 1)
    assert "falling back" in " ".join(capsys.readouterr().out.split())
    assert result.summary["status"] == "finished"
    assert [h["epoch"] for h in rd.metrics()] == [1, 2, 3]
    # nothing valid at all: a clear error, and the finished tracked run stays FINISHED
    for p in rd.checkpoints.iterdir():
        p.write_bytes(b"junk")
    assert main(["resume", str(rd.path), "--epochs", "4"]) == 2
    assert "cannot read checkpoint" in " ".join(capsys.readouterr().err.split())
    assert mlflow_status(tmp_path / "runs", rd.path) == "FINISHED"


# ------------------------------------------------------------- failures and interrupts


def test_any_error_marks_the_run_failed_everywhere_with_its_reason(tiny, tmp_path, monkeypatch):
    import rsexp.experiment.loop as loop

    def broken(self, split="val", progress=None):
        raise RuntimeError("evaluation exploded")

    monkeypatch.setattr(loop.Trainer, "evaluate", broken)
    with pytest.raises(RuntimeError, match="exploded"):
        train(load_config(CONFIG, tiny), run_dir=tmp_path / "runs" / "x")
    rd = RunDir(tmp_path / "runs" / "x")
    assert rd.summary()["status"] == "failed"
    assert rd.summary()["error"] == "RuntimeError: evaluation exploded"
    assert mlflow_status(tmp_path / "runs", rd.path) == "FAILED"


def test_ctrl_c_during_validation_keeps_the_trained_epoch(tiny, tmp_path, monkeypatch):
    import rsexp.experiment.loop as loop

    over = [*tiny, "train.epochs=3", "track.backends=[]", "model.drop_rate=0.1"]
    reference = train(load_config(CONFIG, over), run_dir=tmp_path / "ref")
    real, calls = loop.Trainer.evaluate, {"n": 0}

    def cut(self, split="val", progress=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("SIGINT received")
        return real(self, split, progress)

    monkeypatch.setattr(loop.Trainer, "evaluate", cut)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(CONFIG, over), run_dir=tmp_path / "cut")
    monkeypatch.setattr(loop.Trainer, "evaluate", real)
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert state["partial"]["epoch"] == 2
    assert state["partial"]["batches_done"] == 3  # all of epoch 2's training steps kept
    resume(tmp_path / "cut")

    def strip(rows):
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]

    assert strip(RunDir(tmp_path / "cut").metrics()) == strip(RunDir(reference.run_dir).metrics())


# ------------------------------------------------------------------------------ secrets


def test_a_secret_never_reaches_any_store(tiny, tmp_path, monkeypatch, capsys):
    secret = "sk-live-0123456789abcdef"
    monkeypatch.setenv("MY_SERVICE_API_KEY", secret)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", os.devnull)
    monkeypatch.setenv("WANDB_SILENT", "true")
    over = [
        *tiny,
        "track.backends=[mlflow,wandb]",
        f'track.tags={{"note": "{secret}"}}',
        f"track.wandb.group=g-{secret}",
        f"track.mlflow.experiment=exp-{secret}",
    ]
    assert main(["train", "-c", CONFIG, *over, "--until-epoch", "1"]) == 0
    (run_dir,) = (tmp_path / "runs" / "synthetic").iterdir()
    assert main(["resume", str(run_dir)]) == 0
    assert main(["config", "-c", CONFIG, *over]) == 0
    out = capsys.readouterr()
    assert secret not in out.out + out.err
    leaks = [
        str(p)
        for p in (tmp_path / "runs").rglob("*")
        if p.is_file() and secret.encode() in p.read_bytes()
    ]
    assert not leaks, leaks
    # the resume reattached the same experiment and run (no new "exp-***" experiment)
    db = sqlite3.connect(tmp_path / "runs" / "mlflow.db")
    names = [r[0] for r in db.execute("select name from experiments")]
    assert names.count("exp-***") == 1 and len(db.execute("select * from runs").fetchall()) == 1
    assert RunDir(run_dir).is_finished()


def test_a_bad_guidance_cell_keeps_its_brackets_in_the_console(tiny, tmp_path, capsys):
    bad = tmp_path / "g.json"
    bad.write_text(json.dumps({"v": {"0": {"text": json.dumps({"key_regions": [[1]]})}}}))
    assert main(["train", "-c", CONFIG, *tiny, f"guidance.path={bad}"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "[1]" in err and "[row, col]" in err


class _Val:
    def __init__(self, masks, labels):
        self.masks, self.labels = masks, labels

    def __len__(self):
        return len(self.labels)


def test_every_class_gets_an_overlay_clip_guided_first():
    from rsexp.track.overlay import pick_overlay_clips

    masks = torch.zeros(6, 2, 16, dtype=torch.bool)
    masks[1, 0, 3] = masks[4, 1, 2] = True  # class 0: clip 1 guided; class 2: clip 4
    val = _Val(masks, torch.tensor([0, 0, 1, 1, 2, 2]))
    # one clip per class, the guided one where a class has one; class 1 has none
    assert pick_overlay_clips(val, 3) == [1, 4, 2]
