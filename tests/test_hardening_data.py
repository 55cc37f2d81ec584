"""Hardening of the real-data paths (issue 9): a stale clip cache, unreadable videos,
guidance that matches nothing, empty folds, UCF101 spellings, Desktop Assembly's ``@``
clip ids with the default MLflow tracker, and overlays of non-ASCII class names."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from videos import TINY_TSVIT, make_desktop_assembly, make_ucf50, real_cfg, write_video

from rsexp.cli import main
from rsexp.config import load_config
from rsexp.data import build_raw
from rsexp.data.cache import ClipCache
from rsexp.data.real import DatasetLayoutError, ucf101
from rsexp.data.video import VideoEntry
from rsexp.experiment import RunDir, build_data
from rsexp.experiment.inputs import GuidanceMismatchError
from rsexp.track.base import safe_key
from rsexp.track.overlay import render_overlay

ROOT = Path(__file__).resolve().parent.parent


def test_a_replaced_or_deleted_video_is_decoded_again(tmp_path):
    vids = [write_video(tmp_path / f"v{i}.mp4", n=12) for i in range(2)]
    entries = [VideoEntry(p.stem, p, 0, p.stem) for p in vids]
    cache = ClipCache(tmp_path / "cache", "train1", k=4, size=16)
    started = []
    metas, _ = cache.prepare(entries, workers=1, on_start=started.append)
    time.sleep(0.01)
    write_video(vids[0], n=20, tint=90)  # same name, other content
    metas2, failures = cache.prepare(entries, workers=1, on_start=started.append)
    assert started == [2, 1] and not failures
    assert metas2["v0"].frames != metas["v0"].frames  # 20 frames now, not 12
    assert metas2["v1"] == metas["v1"]
    vids[1].unlink()  # deleted after the cache was built: named, not trained on silently
    _, failures = cache.prepare(entries, workers=1, on_start=started.append)
    assert started[-1] == 1 and "v1.mp4: file not found" in failures["v1"]


def test_unreadable_and_undecodable_videos_are_bad_videos_not_crashes(tmp_path, monkeypatch):
    import decord

    import rsexp.data.video as video

    vids = [write_video(tmp_path / f"v{i}.avi", n=12) for i in range(3)]
    real_trunc, real_reader = video.avi_truncation, decord.VideoReader

    def denied(path):
        if path.name == "v0.avi":
            raise PermissionError(13, "Permission denied")
        return real_trunc(path)

    class Failing(real_reader):
        def get_batch(self, idx):
            raise decord.DECORDError("Check failed: from_size == to_size")

    def reader(path, *a, **k):
        return (Failing if path.endswith("v1.avi") else real_reader)(path, *a, **k)

    monkeypatch.setattr(video, "avi_truncation", denied)
    monkeypatch.setattr(decord, "VideoReader", reader)
    entries = [VideoEntry(p.stem, p, 0, p.stem) for p in vids]
    metas, failures = ClipCache(tmp_path / "c", "t", 4, 16).prepare(entries, workers=1)
    assert set(metas) == {"v2"}
    assert "v0.avi: cannot be read: Permission denied" in failures["v0"]
    assert "v1.avi: decord cannot read it: Check failed" in failures["v1"]


def test_guidance_that_matches_no_training_video_stops_an_rs_run(tmp_path):
    base = make_ucf50(tmp_path / "data", classes=("A", "B"), groups=8, n=12)
    (base / "guidance.json").write_text(json.dumps({"someone_else_v1": {}}))
    with pytest.raises(GuidanceMismatchError) as e:
        build_data(real_cfg(tmp_path))
    msg = str(e.value)
    assert "guidance.json" in msg and "v_A_g06_c01" in msg and "someone_else_v1" in msg
    (base / "guidance.json").write_text("{}")
    with pytest.raises(GuidanceMismatchError, match="the file is empty"):
        build_data(real_cfg(tmp_path))
    data = build_data(real_cfg(tmp_path, "loss.lambda_s=0"))  # the baseline still trains
    assert data.guided_frame_fraction == 0


def test_sparse_guidance_warns(tmp_path):
    base = make_ucf50(tmp_path / "data", classes=("A", "B"), groups=8, n=12)
    g = json.loads((base / "guidance.json").read_text())
    for vid in g:  # keep one annotated frame per video, far from most sampled frames
        g[vid] = {"0": g[vid]["0"]}
    (base / "guidance.json").write_text(json.dumps(g))
    with pytest.warns(UserWarning, match="guides only 12% of their sampled frames; check"):
        build_data(real_cfg(tmp_path, "guidance.max_frame_gap=1", "guidance.coverage=1.0"))


def test_an_empty_fold_says_which_groups_are_missing(tmp_path):
    make_ucf50(tmp_path / "data", classes=("A", "B"), groups=4, n=12)
    with pytest.raises(DatasetLayoutError, match=r"fold 2: the validation side is empty.*"):
        build_raw("ucf50", real_cfg(tmp_path, "data.split=2").data, 4)


def test_ucf101_guidance_is_keyed_by_the_file_on_disk(tmp_path):
    base = tmp_path / "ucf101"
    (base / "splits").mkdir(parents=True)
    (base / "splits" / "classInd.txt").write_text("1 HandstandPushups\n")
    write_video(base / "videos" / "HandstandPushups" / "v_HandStandPushups_g08_c01.avi", n=12)
    (base / "splits" / "trainlist01.txt").write_text(
        "HandstandPushups/v_HandstandPushups_g08_c01.avi 1\n"
    )
    (base / "splits" / "testlist01.txt").write_text(
        "HandstandPushups/v_HandstandPushups_g08_c01.avi\n"
    )
    (tr,) = ucf101(base, 1).train
    assert tr.key == tr.clip_id == "v_HandStandPushups_g08_c01"


def test_tracker_keys_are_safe_for_every_dataset_id():
    ids = ["v_Biking_g01_c01", "12345", "2020-03-07_desk07@0-58", "a:b", "x y"]
    keys = [safe_key(f"overlay/{i}") for i in ids]
    assert keys[2] == "overlay/2020-03-07_desk07_0-58" and keys[3] == "overlay/a_b"
    assert all(k.startswith("overlay/") for k in keys)


def test_desktop_assembly_trains_with_mlflow_despite_at_in_clip_ids(tmp_path):
    make_desktop_assembly(tmp_path / "data")
    args = [
        "train",
        "--config",
        str(ROOT / "sweeps" / "desktop_assembly.yaml"),
        f"data.root={tmp_path / 'data'}",
        f"train.runs_dir={tmp_path / 'runs'}",
        "data.num_frames=4",
        "data.frame_size=16",
        "data.decode_workers=1",
        "data.num_workers=0",
        *TINY_TSVIT,
        "train.epochs=2",
        "train.threads=1",
        "track.backends=[mlflow]",
        "track.overlays.num_clips=2",
    ]
    assert main(args) == 0
    (run_dir,) = (tmp_path / "runs" / "desktop_assembly").iterdir()
    rd = RunDir(run_dir)
    assert rd.is_finished() and [m["epoch"] for m in rd.metrics()] == [1, 2]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    run = client.get_run(rd.tracker_ids()["mlflow"])
    assert run.info.status == "FINISHED"
    images = [f.path for f in client.list_artifacts(run.info.run_id, "images")]
    # overlays show validation windows, "<video>@w<start>": the "@" became "_"
    assert any("desk09_w0+step" in p or "desk07_w0+step" in p for p in images), images


def test_overlay_draws_non_ascii_class_names():
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    attn = np.full((2, 16), 1 / 16)
    mask = np.zeros((2, 16), bool)
    a = render_overlay(frames, attn, mask, "Überschlag", "Ölwechsel", 0.5)
    b = render_overlay(frames, attn, mask, "Uberschlag", "Olwechsel", 0.5)
    assert a.shape == b.shape and not np.array_equal(a, b)
    # the umlauts are drawn as letters: the labels' line (the header) differs only
    # around them, and nothing else in the image differs
    diff = np.abs(a.astype(int) - b.astype(int)).sum(axis=2)
    rows = np.flatnonzero(diff.sum(axis=1))
    assert rows.max() < 26  # the header band
    assert 0 < np.count_nonzero(diff.sum(axis=0)) < a.shape[1] // 2


def test_an_overlay_is_a_grid_of_readable_frames():
    """8 frames: 2 rows of 4 tiles of 160 px (the 4 x 4 guidance cells at 40 px), the
    guided cells outlined in pure green in their own frame only."""
    frames = np.full((8, 16, 16, 3), 128, np.uint8)
    attn = np.full((8, 16), 1 / 16)
    mask = np.zeros((8, 16), bool)
    mask[5, 0] = True  # frame 6, top-left cell
    img = render_overlay(frames, attn, mask, "a", "a", 0.9)
    assert img.shape[1] >= 4 * 160 and img.shape[0] >= 2 * 160
    green = (img[..., 0] == 0) & (img[..., 1] == 255) & (img[..., 2] == 0)
    rows, cols = np.nonzero(green)
    # frame 6 is row 2, column 2: its tile starts at x = 6 + 166, y = 26 + 182
    assert (cols.min(), rows.min()) == (172, 208)
    assert (cols.max(), rows.max()) == (172 + 39, 208 + 39)


def test_num_workers_above_the_cores_is_capped_without_warnings(tiny, recwarn):
    from rsexp.experiment import train

    cores = len(os.sched_getaffinity(0))
    over = [*tiny, f"data.num_workers={cores + 6}", "train.epochs=1", "track.backends=[]"]
    train(load_config(ROOT / "sweeps" / "synthetic.yaml", over))
    assert not [w for w in recwarn if "worker processes" in str(w.message)]
