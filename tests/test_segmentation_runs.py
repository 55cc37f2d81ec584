"""Desktop Assembly as action segmentation: whole videos cut into windows, frame-wise
predictions scored with MoF / Edit / F1@k every epoch, the segmentation figure, window
training, Table 2, and the bad inputs that stop before training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from videos import TINY_TSVIT, make_desktop_assembly, make_ucf50, write_video

from rsexp.cli import main
from rsexp.config import ConfigError, load_config
from rsexp.data import build_raw
from rsexp.data.real import DatasetLayoutError
from rsexp.data.windows import WindowIndex, window_label, window_starts
from rsexp.experiment import RunDir

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "sweeps" / "desktop_assembly.yaml")
SEG = ["mof", "edit", "f1@10", "f1@25", "f1@50"]


def small(tmp_path, *extra):
    return [
        f"data.root={tmp_path / 'data'}",
        f"train.runs_dir={tmp_path / 'runs'}",
        "data.num_frames=4",
        "data.frame_size=16",
        "data.decode_workers=1",
        "data.num_workers=0",
        "data.window_stride=2",
        *TINY_TSVIT,
        "train.epochs=2",
        "train.threads=1",
        *extra,
    ]


def test_windows_and_frame_predictions():
    assert window_starts(10, 4, 3).tolist() == [0, 3, 6]
    assert window_starts(11, 4, 3).tolist() == [0, 3, 6, 7]  # the last ends on frame 10
    assert window_starts(3, 4, 2).tolist() == [0]
    labels = np.array([0, 0, 1, 1, 1, 2])
    assert (
        window_label(labels, 0, 4, "centre") == 1 and window_label(labels, 0, 4, "majority") == 0
    )
    # two windows over 6 frames: frames 2-3 are covered by both, so their logits average
    index = WindowIndex(["v"], [labels], np.array([0, 0]), np.array([0, 2]), 4)
    logits = np.array([[3.0, 0.0, 0.0], [0.0, 2.0, 2.5]])
    # frames 0-1: window 0 (class 0); 2-3: mean (1.5, 1, 1.25) -> 0; 4-5: window 1 -> 2
    assert index.frame_predictions(logits)[0].tolist() == [0, 0, 0, 0, 2, 2]


def test_train_logs_table2_metrics_and_the_segmentation_figure(tmp_path):
    make_desktop_assembly(tmp_path / "data")
    assert main(["train", "--config", CONFIG, *small(tmp_path), "track.backends=[mlflow]"]) == 0
    (run_dir,) = (tmp_path / "runs" / "desktop_assembly").iterdir()
    rd = RunDir(run_dir)
    records = rd.metrics()
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:  # every epoch: window top-1, clip loss and the five frame-wise scores
        assert all(0 <= r[f"val/{k}"] <= 100 for k in ["top1", *SEG])
        assert r["val/clip_loss"] > 0
    assert all(f"test/{k}" in records[-1] for k in ["top1", "clip_loss", *SEG])
    assert not any(k.startswith("test/") for k in records[0])
    # the per-frame sequences of the last epoch, at 10 fps: 60 frames at 25 fps -> 24
    seq = json.loads((run_dir / "segmentation" / "test.json").read_text())
    (vid,) = seq
    assert vid == "2020-03-08_desk02" and len(seq[vid]["pred"]) == 24
    frames = np.round(np.arange(24) * 2.5).astype(int)
    assert seq[vid]["true"] == np.minimum(frames // 20, 2).tolist()  # the known actions
    # the figure, per epoch, in the run folder and in MLflow next to the overlays
    for epoch in (1, 2):
        assert (run_dir / "overlays" / "segmentation" / f"epoch_{epoch:04d}.png").is_file()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    run_id = rd.tracker_ids()["mlflow"]
    assert client.get_metric_history(run_id, "val/f1_50")  # MLflow keys allow no "@"
    images = [f.path for f in client.list_artifacts(run_id, "images")]
    assert any("segmentation" in p for p in images), images


def test_window_training_labels_by_centre_or_majority(tmp_path):
    make_desktop_assembly(tmp_path / "data")
    over = small(tmp_path, "data.sample=windows", "data.augment=false", "data.val_fraction=0")
    raw = build_raw("desktop_assembly", load_config(CONFIG, over).data, 4)
    # two training videos, 24 frames at 10 fps, windows of 4 every 2: 11 each
    assert len(raw.train.ids) == 22 and raw.train.windows is not None
    truth = raw.train.windows.labels[0]
    starts = raw.train.windows.start[:11]
    assert raw.train.labels[:11].tolist() == [int(truth[s + 2]) for s in starts]
    maj = build_raw(
        "desktop_assembly", load_config(CONFIG, [*over, "data.window_label=majority"]).data, 4
    )
    assert maj.train.labels[:11].tolist() == [
        int(np.bincount(truth[s : s + 4]).argmax()) for s in starts
    ]
    make_ucf50(tmp_path / "data", groups=10, n=12)
    ucf = load_config(None, ["data.name=ucf50", "data.sample=windows", *small(tmp_path)[:1]])
    with pytest.raises(ConfigError, match="data.sample=windows: ucf50 is not labelled per frame"):
        build_raw("ucf50", ucf.data, 4)


def test_a_two_trial_sweep_writes_table2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_desktop_assembly(tmp_path / "data")
    over = small(
        tmp_path,
        "sweep.trials=2",
        "sweep.epochs=1",
        "train.epochs=1",
        "sweep.confirm_seeds=[0]",
        "sweep.ablation_seeds=[0]",
        "sweep.heartbeat_interval=1",
        "sweep.grace_period=3",
        "track.backends=[local]",
        # 4 frames hold the paper's segments apart only for immediate >= 0.2
        "sweep.space.immediate={low: 0.2, high: 0.3}",
    )
    assert main(["sweep", "--config", CONFIG, *over]) == 0
    study = optuna.load_study(
        study_name="desktop_assembly-tsvit",
        storage=f"sqlite:///{tmp_path / 'runs' / 'desktop_assembly' / 'optuna.db'}",
    )
    assert len([t for t in study.get_trials() if t.state.is_finished()]) == 2
    (table,) = (tmp_path / "runs" / "desktop_assembly").rglob("comparison.md")
    text = table.read_text()
    assert "MoF ↑" in text and "F1@50 ↑" in text and "test split" in text


def test_ground_truth_that_does_not_fit_its_video_stops_naming_the_file(tmp_path):
    base = make_desktop_assembly(tmp_path / "data")
    gt = base / "groundTruth" / "2020-03-08_desk02.txt"
    gt.write_text(gt.read_text() * 2)  # 120 lines for a 60-frame video
    with pytest.raises(DatasetLayoutError, match=r"desk02\.txt: 120 lines .* has 60 frames"):
        build_raw("desktop_assembly", load_config(CONFIG, small(tmp_path)).data, 4)


def test_a_split_listing_a_missing_or_empty_video_is_named(tmp_path):
    base = make_desktop_assembly(tmp_path / "data")
    (base / "videos" / "2020-03-08_desk02.mp4").unlink()
    with pytest.raises(Exception, match=r"2020-03-08_desk02\.mp4: file not found"):
        build_raw("desktop_assembly", load_config(CONFIG, small(tmp_path)).data, 4)
    (base / "videos" / "2020-03-08_desk02.mp4").write_bytes(b"")
    with pytest.raises(Exception, match=r"2020-03-08_desk02\.mp4: decord cannot read it"):
        build_raw("desktop_assembly", load_config(CONFIG, small(tmp_path)).data, 4)
    write_video(base / "videos" / "2020-03-08_desk02.mp4", n=60)  # put right: goes on
    build_raw("desktop_assembly", load_config(CONFIG, small(tmp_path)).data, 4)
