import json
import re
from pathlib import Path

import pytest
import torch

from rsexp.cli import main
from rsexp.config import load_config
from rsexp.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rsexp.core.registry import UnknownNameError
from rsexp.core.step import NonFiniteLossError
from rsexp.experiment import resume, train
from rsexp.track.local import read_metrics

CONFIG = "sweeps/synthetic.yaml"
TIME_KEYS = (
    "time/epoch_s",
    "time/clips_per_s",
    "time/data_wait_frac",
    "time/data_wait_warm_frac",
)


def run_dirs(tmp_path):
    return sorted((tmp_path / "runs" / "synthetic").iterdir())


def test_cli_train_end_to_end(tiny, tmp_path, capsys):
    assert main(["train", "--config", CONFIG, *tiny]) == 0
    (run_dir,) = run_dirs(tmp_path)
    cfg = load_config(run_dir / "config.yaml")
    assert cfg.data.synthetic.num_train == 24 and cfg.model.embed_dim == 16
    metrics = read_metrics(run_dir)
    assert [m["epoch"] for m in metrics] == [1, 2]
    for key in [
        "loss/total",
        "loss/ce",
        "loss/spatial",
        "loss/temporal",
        "val/top1",
        "val/top5",
        "val/clip_loss",
        "val/loss_spatial",
        "lr",
        "time/epoch_s",
    ]:
        assert key in metrics[0], key
    assert 0 <= metrics[-1]["val/top1"] <= 100
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["method"] == "rs"
    assert summary["val/top1"] == metrics[-1]["val/top1"]
    assert summary["best_epoch"] in (1, 2)
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    # the guidance of the synthetic data is written in the released format and re-read
    assert list((tmp_path / "data" / "synthetic").glob("*/guidance.json"))
    out = capsys.readouterr().out
    assert "parameters" in out and str(run_dir) in out.replace("\n", "")


def test_cli_bad_override_exits_2_naming_the_key(tiny, capsys):
    assert main(["train", "--config", CONFIG, *tiny, "loss.lamda_t=1"]) == 2
    assert "loss.lamda_t" in capsys.readouterr().err


def mlflow_run(tmp_path, run_dir):
    from mlflow import MlflowClient

    run_id = json.loads((run_dir / "trackers.json").read_text())["mlflow"]["run_id"]
    return MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}").get_run(run_id)


def test_unknown_model_lists_valid_names(tiny):
    cfg = load_config(CONFIG, [*tiny, "model.name=resnet"])
    with pytest.raises(UnknownNameError, match="valid models"):
        train(cfg)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.name=tsvt", "unknown model 'tsvt'"),
        ("data.name=ucf5O", "unknown dataset 'ucf5O'"),
        ("data.name=ucf50", "UCF50.rar"),  # known, but not downloaded
        ("model.patch_size=5", "frame size 16 is not a multiple of patch 5"),
        # a frame count the paper's segments cannot fit apart, named with both
        ("data.num_frames=2", "immediate segment .* contextual segment"),
    ],
)
def test_a_typo_costs_nothing(tiny, tmp_path, capsys, override, message):
    """Found before any run folder, MLflow store, experiment or run exists."""
    assert main(["train", "--config", CONFIG, *tiny, override]) == 2
    assert re.search(message, " ".join(capsys.readouterr().err.split()))
    assert not (tmp_path / "runs").exists()


def test_nproc_zero_is_an_error(tiny, tmp_path, capsys):
    assert main(["train", "--config", CONFIG, *tiny, "--nproc", "0"]) == 2
    assert "--nproc 0" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_stop_and_resume_equals_uninterrupted(tiny, tmp_path):
    over = [*tiny, "train.epochs=4", "model.drop_rate=0.1", "data.augment=true"]
    full = train(load_config(CONFIG, over), run_dir=tmp_path / "runs" / "full")
    part = train(load_config(CONFIG, over), run_dir=tmp_path / "runs" / "part", until_epoch=2)
    assert [h["epoch"] for h in part.history] == [1, 2]
    # the record says what happened: stopped on purpose, resumable, in one word everywhere
    stopped = json.loads((part.run_dir / "summary.json").read_text())
    assert stopped["status"] == "stopped" and stopped["epochs"] == 2
    assert "--until-epoch 2 of 4" in stopped["error"]
    assert mlflow_run(tmp_path, part.run_dir).data.tags["status"] == "stopped"
    done = resume(part.run_dir)
    assert json.loads((done.run_dir / "summary.json").read_text())["status"] == "finished"
    assert mlflow_run(tmp_path, done.run_dir).data.tags["status"] == "finished"
    assert [h["epoch"] for h in read_metrics(done.run_dir)] == [1, 2, 3, 4]

    def strip(hist):
        return [{k: v for k, v in h.items() if k not in TIME_KEYS} for h in hist]

    assert strip(read_metrics(done.run_dir)) == strip(read_metrics(full.run_dir))
    a = load_checkpoint(full.run_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(done.run_dir / "checkpoints" / "last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_resume_rewrites_log_from_checkpoint(tiny, tmp_path):
    """A crash after the checkpoint but before the log line: resume fills the gap."""
    r = train(load_config(CONFIG, [*tiny, "train.epochs=3"]), until_epoch=2)
    log = r.run_dir / "metrics.jsonl"
    log.write_text(log.read_text().splitlines()[0] + "\n")  # epoch 2 line lost
    resume(r.run_dir.name, runs_dir=tmp_path / "runs")  # by run id
    assert [m["epoch"] for m in read_metrics(r.run_dir)] == [1, 2, 3]


@pytest.mark.parametrize("log_every", [0, 3])
def test_non_finite_loss_stops_naming_epoch_and_step(tiny, log_every):
    # log_every=3: the values stay on the device for 3 steps (as on a GPU); the read
    # still names the first bad step, and no checkpoint of the NaN model is written
    cfg = load_config(
        CONFIG,
        [*tiny, "optim.lr=1e30", "optim.warmup_epochs=0", "optim.grad_clip=0",
         f"train.log_every={log_every}"],
    )  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step \d+/\d+ .*loss=nan"):
        train(cfg)
    assert not list(Path(cfg.train.runs_dir).rglob("*.pt"))


def test_reading_losses_every_few_steps_logs_the_same_numbers(tiny, tmp_path):
    a = train(
        load_config(CONFIG, [*tiny, "train.epochs=2", "train.runs_dir=" + str(tmp_path / "a")])
    )
    b = train(
        load_config(
            CONFIG,
            [
                *tiny,
                "train.epochs=2",
                "train.log_every=4",
                "train.runs_dir=" + str(tmp_path / "b"),
            ],
        )
    )
    keep = ("loss/total", "loss/ce", "loss/spatial", "loss/temporal", "grad_norm", "val/top1")
    ma, mb = read_metrics(a.run_dir), read_metrics(b.run_dir)
    assert [{k: m[k] for k in keep} for m in ma] == [{k: m[k] for k in keep} for m in mb]


def test_checkpoint_is_atomic_and_versioned(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"w": torch.ones(2)})
    assert load_checkpoint(path)["w"].sum() == 2
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left
    torch.save({"format_version": 99}, path)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")


def test_a_bug_keeps_its_traceback_a_user_error_does_not(tiny, monkeypatch, capsys):
    """The CLI turns input errors into one line and exit 2; a KeyError from a bug is not
    an input error and must surface with its traceback."""
    import rsexp.experiment.run as run

    def broken(*a, **k):
        raise KeyError("some_internal_key")

    monkeypatch.setattr(run, "build_run", broken)
    with pytest.raises(KeyError, match="some_internal_key"):
        main(["train", "--config", CONFIG, *tiny, "track.backends=[]"])
    monkeypatch.undo()
    assert main(["train", "--config", CONFIG, *tiny, "model.name=resnet"]) == 2
    assert "valid models" in capsys.readouterr().err


def test_compiled_model_trains_to_the_same_losses_as_eager(tiny, tmp_path):
    """train.compile=true compiles the run's model in place (checkpoint keys unchanged),
    and compiled steps give the eager steps' losses and weights within float tolerance."""
    import copy

    from rsexp.core.step import read_sums, train_step
    from rsexp.experiment.build import build_run

    cfg = load_config(CONFIG, [*tiny, "train.compile=true", "loss.lambda_t=0.5"])
    parts = build_run(cfg)
    assert parts.model._compiled_call_impl is not None  # the key reached the model
    assert "_orig_mod" not in " ".join(parts.model.state_dict())
    eager = copy.deepcopy(parts.model)
    eager._compiled_call_impl = None
    batch = next(iter(torch.utils.data.DataLoader(parts.data.train, batch_size=4)))
    losses = {}
    for name, model in (("eager", eager), ("compiled", parts.model)):
        # SGD: Adam's first steps move every weight by ~lr whatever the gradient's size,
        # so float noise on a near-zero gradient would show as a lr-sized difference
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        losses[name] = [
            read_sums([train_step(model, batch, opt, cfg.loss, step=i, lr=0.1)])[0]
            for i in range(3)
        ]
    for a, b in zip(losses["eager"], losses["compiled"], strict=True):
        for k in ("loss", "loss/ce", "loss/spatial", "loss/temporal"):
            assert a[k][0] == pytest.approx(b[k][0], rel=1e-4, abs=1e-5), k
    for p, q in zip(eager.parameters(), parts.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-5)


def test_two_processes_train_one_run_equal_to_one_process(tiny, tmp_path):
    """rsexp train --nproc 2 (torchrun, gloo): the same global batch gives the single
    process's numbers; one run folder and one tracked MLflow run; the distributed resume
    (from an --until-epoch stop) continues it."""
    import mlflow

    over = [*tiny, "train.epochs=2"]
    one = train(load_config(CONFIG, [*over, f"train.runs_dir={tmp_path / 'one'}"]))
    runs = tmp_path / "two"
    run_dir = runs / "synthetic" / "ddp"
    args = ["-c", CONFIG, *over, f"train.runs_dir={runs}", "--nproc", "2"]
    assert main(["train", *args, "--run-dir", str(run_dir), "--until-epoch", "1"]) == 0
    assert main(["resume", str(run_dir), "--nproc", "2"]) == 0
    keys = ("loss/total", "loss/ce", "loss/spatial", "loss/temporal", "grad_norm", "val/top1",
            "val/clip_loss", "val/loss_spatial", "test/top1", "test/clip_loss")  # fmt: skip
    ref, got = read_metrics(one.run_dir), read_metrics(run_dir)
    assert [m["epoch"] for m in got] == [1, 2]
    for a, b in zip(ref, got, strict=True):
        for k in keys:
            if k in a:
                assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (a["epoch"], k)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["processes"] == 2
    assert [p.name for p in (runs / "synthetic").iterdir()] == ["ddp"]  # rank 1 wrote none
    client = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    exp = client.get_experiment_by_name("synthetic")
    tracked = client.search_runs([exp.experiment_id])
    assert len(tracked) == 1 and tracked[0].info.status == "FINISHED"
    assert tracked[0].data.metrics["loss/total"] == pytest.approx(got[-1]["loss/total"])


def test_an_improving_epoch_writes_its_checkpoint_once(tiny):
    """best.pt and last.pt of an epoch that improved val/top1 are one file under two
    names (one write of a possibly 1 GB state); previous.pt keeps the epoch before."""
    import os

    r = train(load_config(CONFIG, [*tiny, "train.epochs=2"]), until_epoch=1)
    ck = r.run_dir / "checkpoints"
    assert os.path.samefile(ck / "best.pt", ck / "last.pt")  # epoch 1 is the best so far
    assert load_checkpoint(ck / "best.pt")["epoch"] == 1
    done = resume(r.run_dir)
    best, last = load_checkpoint(ck / "best.pt"), load_checkpoint(ck / "last.pt")
    assert last["epoch"] == 2 and load_checkpoint(ck / "previous.pt")["epoch"] == 1
    assert best["epoch"] == done.summary["best_epoch"]
    assert os.path.samefile(ck / "best.pt", ck / "last.pt") == (best["epoch"] == 2)
    assert not [p.name for p in ck.iterdir() if p.name.startswith(".")]  # no temp left
