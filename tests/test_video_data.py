"""Real-video datasets: index readers, decord decoding, the truncated-AVI guard, the
decoded-clip cache, guidance through the crop, segment sampling, and a real training
run through the CLI on a generated UCF50-layout dataset."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from videos import TINY_TSVIT, level, make_ucf50, real_cfg, segfault_on_boom, write_video

from rsexp.cli import main
from rsexp.config import load_config
from rsexp.data import Split, VideoDecodeError, build_raw
from rsexp.data.cache import CachedClips, ClipCache, run_pool
from rsexp.data.dataset import ClipDataset
from rsexp.data.real import DatasetLayoutError, desktop_assembly, ssv2, ucf50, ucf101
from rsexp.data.video import (
    BadVideoError,
    VideoEntry,
    avi_truncation,
    decode_clip,
    segment_centres,
)

ROOT = Path(__file__).resolve().parent.parent


def test_segment_centres_are_tsn_test_sampling():
    np.testing.assert_array_equal(segment_centres(0, 30, 5), [3, 9, 15, 21, 27])
    np.testing.assert_array_equal(segment_centres(10, 20, 2), [12, 17])
    np.testing.assert_array_equal(segment_centres(4, 6, 4), [4, 4, 5, 5])  # short: repeats
    with pytest.raises(ValueError, match="empty"):
        segment_centres(5, 5, 3)


@pytest.mark.parametrize("suffix", [".avi", ".mp4", ".webm"])
def test_decode_clip_reads_the_sampled_frames_resized_and_cropped(tmp_path, suffix):
    path = write_video(tmp_path / f"v{suffix}", n=30, hw=(48, 64))
    frames, meta = decode_clip(VideoEntry("v", path, 0, "v"), k=5, size=24)
    assert frames.shape == (5, 24, 24, 3) and frames.dtype == np.uint8
    assert meta.frames == (3, 9, 15, 21, 27) and meta.hw == (48, 64)
    # short side 48 -> 24 (scale 1/2): the 32-wide frame loses 4 px each side = 8 source px
    assert meta.box == pytest.approx((0, 8, 48, 48))
    np.testing.assert_allclose(frames.reshape(5, -1).mean(1), level(meta.frames), atol=3)


def test_decode_clip_of_a_segment_samples_inside_it(tmp_path):
    path = write_video(tmp_path / "long.mp4", n=40)
    frames, meta = decode_clip(VideoEntry("long@10-20", path, 0, "long", 10, 20), 2, 16)
    assert meta.frames == (12, 17)
    np.testing.assert_allclose(frames.reshape(2, -1).mean(1), level([12, 17]), atol=3)
    with pytest.raises(BadVideoError, match="has 40 frames"):
        decode_clip(VideoEntry("late", path, 0, "long", 50, 60), 2, 16)


def test_truncated_avi_is_named_not_decoded_into_garbage(tmp_path):
    path = write_video(tmp_path / "v_X_g01_c01.avi", n=60, hw=(96, 128))
    assert avi_truncation(path) is None
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.9)])
    # decord itself opens it and hands back fewer frames without complaint
    from decord import VideoReader

    assert len(VideoReader(str(cut))) < 60
    assert "truncated" in avi_truncation(cut)
    with pytest.raises(BadVideoError, match=r"cut\.avi: truncated: its RIFF header says"):
        decode_clip(VideoEntry("cut", cut, 0, "cut"), 4, 16)
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"\0" * 4096)
    with pytest.raises(BadVideoError, match="garbage.avi: not an AVI file"):
        decode_clip(VideoEntry("g", garbage, 0, "g"), 4, 16)
    notavi = tmp_path / "broken.mp4"
    notavi.write_bytes(b"nothing here" * 100)
    with pytest.raises(BadVideoError, match="broken.mp4: decord cannot read it"):
        decode_clip(VideoEntry("b", notavi, 0, "b"), 4, 16)


# ----------------------------------------------------------------------------- indexes


def test_ucf50_index_is_a_group_wise_fold(tmp_path):
    base = tmp_path / "ucf50"
    for cls in ("B", "A"):
        for g in (1, 5, 6, 25):
            (base / "videos" / cls).mkdir(parents=True, exist_ok=True)
            (base / "videos" / cls / f"v_{cls}_g{g:02d}_c02.avi").touch()
    (base / "videos" / "A" / "notes.txt").touch()  # not a video: ignored
    idx = ucf50(base, 1)
    assert idx.class_names == ["A", "B"]
    assert sorted(e.clip_id for e in idx.val) == [
        "v_A_g01_c02",
        "v_A_g05_c02",
        "v_B_g01_c02",
        "v_B_g05_c02",
    ]
    assert {e.label for e in idx.train if e.clip_id.startswith("v_B")} == {1}
    assert {e.clip_id for e in ucf50(base, 2).val} == {"v_A_g06_c02", "v_B_g06_c02"}
    (base / "videos" / "A" / "clip7.avi").touch()
    with pytest.raises(DatasetLayoutError, match=r"clip7\.avi: the name does not end in _gNN"):
        ucf50(base, 1)
    with pytest.raises(DatasetLayoutError, match="data.split=6: UCF50 has splits 1..5"):
        ucf50(base, 6)


def test_ucf101_index_reads_the_official_lists(tmp_path):
    base = tmp_path / "ucf101"
    (base / "splits").mkdir(parents=True)
    (base / "splits" / "classInd.txt").write_text("1 ApplyLipstick\n2 HandstandPushups\n")
    for rel in (
        "ApplyLipstick/v_ApplyLipstick_g01_c01.avi",
        "HandstandPushups/v_HandStandPushups_g08_c01.avi",
    ):
        (base / "videos" / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / "videos" / rel).touch()
    (base / "splits" / "trainlist01.txt").write_text(
        "HandstandPushups/v_HandstandPushups_g08_c01.avi 2\n"
    )
    (base / "splits" / "testlist01.txt").write_text("ApplyLipstick/v_ApplyLipstick_g01_c01.avi\n")
    idx = ucf101(base, 1)
    assert idx.class_names == ["ApplyLipstick", "HandstandPushups"]
    (tr,) = idx.train
    # the list spells the file differently from the disk; resolved once, at the edge
    assert tr.label == 1 and tr.path.name == "v_HandStandPushups_g08_c01.avi"
    assert tr.path.is_file() and idx.val[0].label == 0
    (base / "splits" / "testlist01.txt").write_text("x\nBoxing/v_Boxing_g01_c01.avi\n")
    with pytest.raises(DatasetLayoutError, match=r"testlist01\.txt, line 1: 'x' is not"):
        ucf101(base, 1)
    (base / "splits" / "classInd.txt").write_text("1 A\n3 B\n")
    with pytest.raises(DatasetLayoutError, match=r"classInd\.txt, line 2: expected '2 <Class>'"):
        ucf101(base, 1)


def test_ssv2_index_maps_templates_to_labels(tmp_path):
    base = tmp_path / "ssv2"
    (base / "labels").mkdir(parents=True)
    labels = {"Holding something": "1", "Pushing something from left to right": "0"}
    (base / "labels" / "labels.json").write_text(json.dumps(labels))
    train = [{"id": "7", "label": "holding a cup", "template": "Holding [something]"}]
    val = [{"id": "9", "template": "Pushing [something] from left to right"}]
    (base / "labels" / "train.json").write_text(json.dumps(train))
    (base / "labels" / "validation.json").write_text(json.dumps(val))
    (base / "videos").mkdir()
    (base / "videos" / "9.mp4").touch()  # a re-encoded mirror
    idx = ssv2(base, 1)
    assert idx.class_names == ["Pushing something from left to right", "Holding something"]
    assert (idx.train[0].label, idx.train[0].key, idx.train[0].path.name) == (1, "7", "7.webm")
    assert idx.val[0].label == 0 and idx.val[0].path.name == "9.mp4"
    val.append({"id": "11", "template": "Dropping [something]"})
    (base / "labels" / "validation.json").write_text(json.dumps(val))
    with pytest.raises(DatasetLayoutError, match=r"validation\.json, entry 1 \(video 11\)"):
        ssv2(base, 1)


def test_desktop_assembly_clips_are_action_segments(tmp_path):
    base = tmp_path / "desktop_assembly"
    (base / "groundTruth").mkdir(parents=True)
    (base / "splits").mkdir()
    (base / "videos").mkdir()
    (base / "videos" / "2020-1.mp4").touch()
    (base / "mapping.txt").write_text("0 background\n1 pick screwdriver\n2 place lid\n")
    actions = ["background"] * 3 + ["pick screwdriver"] * 4 + ["place lid"] * 2
    (base / "groundTruth" / "2020-1.txt").write_text("\n".join(actions) + "\n")
    (base / "splits" / "train.split1.bundle").write_text("2020-1.txt\n")
    (base / "splits" / "test.split1.bundle").write_text("2020-1.txt\n")
    idx = desktop_assembly(base, 1)
    assert [(e.clip_id, e.label, e.start, e.end) for e in idx.train] == [
        ("2020-1@0-3", 0, 0, 3),
        ("2020-1@3-7", 1, 3, 7),
        ("2020-1@7-9", 2, 7, 9),
    ]
    assert {e.key for e in idx.train} == {"2020-1"} and idx.train[0].path.suffix == ".mp4"
    (base / "groundTruth" / "2020-1.txt").write_text("background\nscrew\n")
    with pytest.raises(DatasetLayoutError, match=r"2020-1\.txt, frame 1: action 'screw'"):
        desktop_assembly(base, 1)


# ------------------------------------------------------------------------------- cache


@pytest.mark.parametrize("fmt", ["jpeg", "npy"])
def test_clip_cache_resumes_and_names_failures(tmp_path, fmt):
    vids = [write_video(tmp_path / f"v{i}.mp4", n=12 + i) for i in range(3)]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00garbage" * 64)
    entries = [VideoEntry(p.stem, p, 0, p.stem) for p in [*vids, bad]]
    cache = ClipCache(tmp_path / "cache", "train1", k=4, size=16, fmt=fmt)
    started = []
    metas, failures = cache.prepare(entries, workers=2, on_start=started.append)
    assert started == [4] and set(metas) == {"v0", "v1", "v2"}
    assert list(failures) == ["bad"] and "bad.mp4: decord cannot read it" in failures["bad"]
    assert json.loads((cache.root / "failures.json").read_text()) == failures
    arr = CachedClips([cache.file("v2")])[0]
    assert arr.shape == (4, 16, 16, 3)
    np.testing.assert_allclose(arr.reshape(4, -1).mean(1), level(metas["v2"].frames), atol=3)
    # a second pass decodes only what is missing; the bad video is tried again
    metas2, _ = cache.prepare(entries, workers=1, on_start=started.append)
    assert started == [4, 1] and metas2 == metas
    bad.unlink()
    shutil.copy(vids[0], bad)
    metas3, failures3 = cache.prepare(entries, workers=1, on_start=started.append)
    assert started[-1] == 1 and not failures3 and "bad" in metas3
    assert not (cache.root / "failures.json").exists()


def test_bad_video_stops_after_the_pass_keeping_the_rest_then_skip(tmp_path):
    base = make_ucf50(tmp_path / "data", classes=("A", "B"), groups=8, n=12)
    victim = base / "videos" / "B" / "v_B_g07_c01.avi"  # a training video (fold 1)
    victim.write_bytes(victim.read_bytes()[:-200])  # truncated
    cfg = real_cfg(tmp_path, "data.val_fraction=0")  # the whole training side trains
    with pytest.raises(VideoDecodeError) as e:
        build_raw("ucf50", cfg.data, 4)
    msg = str(e.value)
    assert "1 of 6 train clips of ucf50 could not be decoded" in msg
    assert "v_B_g07_c01.avi: truncated" in msg
    assert "data.bad_videos=skip" in msg and "15 decoded clips are cached" in msg
    skip = real_cfg(tmp_path, "data.bad_videos=skip", "data.val_fraction=0")
    with pytest.warns(UserWarning, match="left out 1 clips"):
        raw = build_raw("ucf50", skip.data, 4)
    assert len(raw.train.ids) == 5 and "v_B_g07_c01" not in raw.train.ids
    assert list(raw.skipped) == ["v_B_g07_c01"] and len(raw.test.ids) == 10
    assert raw.train.choices == 2 and raw.train.frames.shape == (5, 8)
    assert raw.train.videos[0].shape == (8, 18, 18, 3)  # 16 * 8/7, for random crops
    assert raw.val is None and raw.test.videos[0].shape == (4, 16, 16, 3)


def test_guidance_follows_the_centre_crop_and_the_sampled_frames():
    # a 48 x 64 frame centre-cropped to 48 x 48 (x from 8 to 56), guidance grid 4 x 4
    frames = np.array([[0, 9, 18, 27]])
    split = Split(
        ["v"],
        np.zeros((1, 4, 8, 8, 3), np.uint8),
        np.array([0]),
        frames,
        ["v"],
        boxes=np.array([[0.0, 8.0, 48.0, 48.0]]),
        frame_hw=np.array([[48, 64]]),
    )

    # cell (1, 0) on frame 9, (2, 3) on frame 18, (0, 1) on frame 27
    def lookup(key, idx, length, fps):
        m = np.zeros((len(idx), 16), bool)
        cells = {9: 4, 18: 11, 27: 1}
        for t, f in enumerate(idx):
            if f in cells:
                m[t, cells[f]] = True
        return m

    out = split.guidance_masks(lookup, 4)
    # column 0 of the frame covers x 0..16; 8..16 survives = 2/3 of the new first cell
    assert out[0, 1].nonzero()[0].tolist() == [4]
    assert out[0, 2].nonzero()[0].tolist() == [11]
    assert out[0, 3].nonzero()[0].tolist() == [1]  # x 16..32 stays in the second cell
    assert not out[0, 0].any()
    assert not split.guidance_masks(lookup, 4, keep=set()).any()  # coverage 0


def test_temporal_jitter_picks_one_candidate_per_segment():
    V, T, c = 3, 4, 3
    videos = np.zeros((V, T * c, 2, 2, 3), np.uint8)
    videos[:] = np.arange(T * c, dtype=np.uint8)[None, :, None, None, None]
    masks = np.zeros((V, T * c, 4), bool)
    train = ClipDataset(["a", "b", "c"], videos, [0, 1, 2], masks, choices=c, train=True)
    val = ClipDataset(["a", "b", "c"], videos, [0, 1, 2], masks, choices=c)
    picks = set()
    for epoch in range(6):
        train.set_epoch(epoch)
        pick = train.frame_choice(0, torch.Generator().manual_seed(epoch))
        assert ((pick // c) == torch.arange(T)).all()  # one per segment, in order
        picks.add(tuple(pick.tolist()))
    assert len(picks) > 1  # jitter
    assert val.frame_choice(1).tolist() == [1, 4, 7, 10]  # the middle candidates
    frames, _ = val.clip(2)
    assert frames[:, 0, 0, 0].tolist() == [1, 4, 7, 10]
    a, b = train[0]["video"], train[0]["video"]
    assert torch.equal(a, b)  # a function of (seed, epoch, index)


# --------------------------------------------------------------------------- end to end


def test_cli_trains_on_a_real_video_dataset_and_reuses_the_cache(tmp_path, capsys):
    make_ucf50(tmp_path / "data", groups=10, n=24)
    args = [
        "train",
        "--config",
        str(ROOT / "sweeps" / "ucf50.yaml"),
        f"data.root={tmp_path / 'data'}",
        f"train.runs_dir={tmp_path / 'runs'}",
        "data.num_frames=4",
        "data.frame_size=32",
        "data.batch_size=6",
        "data.num_workers=2",
        "data.decode_workers=2",
        "model.name=tsvit",
        "model.embed_dim=16",
        "model.depth=2",
        "model.temporal_depth=1",
        "model.num_heads=2",
        "model.patch_size=8",
        "train.epochs=1",
        "train.threads=1",
        "track.backends=[local]",
    ]
    assert main(args) == 0
    (run_dir,) = (tmp_path / "runs" / "ucf50").iterdir()
    (record,) = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert 0 <= record["val/top1"] <= 100 and np.isfinite(record["loss/spatial"])
    assert record["loss/spatial"] > 0  # guidance reached the spatial loss through the crop
    out = " ".join(capsys.readouterr().out.split())
    # fold 1: groups 1-5 are the test side; 1 of the 5 training groups validates
    assert "12 train / 3 val / 15 test clips" in out and "3 classes" in out
    cache = tmp_path / "data" / "ucf50" / "cache"
    metas = {p.name: (p / "meta.jsonl").read_text() for p in cache.iterdir()}
    assert sorted(metas) == ["eval1-k4-s32-jpeg-v2", "train1-k8-s37-jpeg-v2"]
    assert len(metas["train1-k8-s37-jpeg-v2"].splitlines()) == 12
    assert len(metas["eval1-k4-s32-jpeg-v2"].splitlines()) == 3 + 15
    # overlays of real clips were drawn
    assert list((run_dir / "overlays").rglob("*.png"))
    # a second run decodes nothing
    assert main(args) == 0
    assert "decoding" not in capsys.readouterr().out
    assert {p.name: (p / "meta.jsonl").read_text() for p in cache.iterdir()} == metas


def test_real_dataset_without_guidance_trains_the_baseline_only(tmp_path):
    base = make_ucf50(tmp_path / "data", classes=("A", "B"), groups=8, n=12)
    (base / "guidance.json").unlink()
    from rsexp.experiment import build_data

    with pytest.raises(FileNotFoundError, match=r"ucf50/guidance\.json\. The spatial loss"):
        build_data(real_cfg(tmp_path))
    data = build_data(real_cfg(tmp_path, "loss.lambda_s=0", "loss.lambda_t=0"))
    assert len(data.train) + len(data.val) == 6 and data.guided_frame_fraction == 0
    # and it trains through the command, default trackers on, recording "no guidance"
    args = ["train", "-c", str(ROOT / "sweeps" / "ucf50.yaml"), f"data.root={tmp_path / 'data'}",
            f"train.runs_dir={tmp_path / 'runs'}", "data.num_frames=4", "data.frame_size=16",
            "data.decode_workers=1", *TINY_TSVIT, "train.epochs=1", "train.threads=1",
            "loss.lambda_s=0", "loss.lambda_t=0"]  # fmt: skip
    assert main(args) == 0
    (run_dir,) = (tmp_path / "runs" / "ucf50").iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    assert json.loads((run_dir / "params.json").read_text())["guidance.digest"] == "none"


def test_ctrl_c_while_decoding_keeps_what_is_decoded(tmp_path):
    make_ucf50(tmp_path / "data", classes=("A", "B", "C", "D"), groups=25, n=24)
    overrides = [f"data.root={tmp_path / 'data'}", "data.frame_size=224", "data.decode_workers=2"]
    cmd = [
        sys.executable,
        "-m",
        "rsexp.cli",
        "train",
        "--config",
        str(ROOT / "sweeps" / "ucf50.yaml"),
    ]
    proc = subprocess.Popen(
        [*cmd, *overrides, f"train.runs_dir={tmp_path / 'runs'}", "track.backends=[local]"],
        start_new_session=True,  # a terminal's Ctrl-C: SIGINT to the whole process group
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    meta = tmp_path / "data" / "ucf50" / "cache" / "train1-k16-s256-jpeg-v2" / "meta.jsonl"
    deadline = time.monotonic() + 120
    while not (meta.is_file() and meta.read_text().count("\n") >= 4):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, out
    assert "interrupted before training started" in out and "Traceback" not in out
    done = meta.read_text().count("\n")
    assert 4 <= done < 64  # fold 1 trains on 4 classes x 16 of its 20 groups (4 validate)
    # every clip file on disk is recorded: none decoded in vain
    recorded = {json.loads(x)["clip"] for x in meta.read_text().splitlines()}
    on_disk = {p.stem for p in meta.parent.glob("*.npz")}
    assert on_disk == recorded
    # the next run decodes only the rest
    started = []
    cfg = load_config(ROOT / "sweeps" / "ucf50.yaml", overrides)
    build_raw("ucf50", cfg.data, 4, lambda desc, n: started.append((desc, n)) or (lambda: None))
    assert started[0] == (f"decoding ucf50 train ({64 - done} clips)", 64 - done)


def test_sweep_on_a_real_video_dataset_writes_its_tables(tmp_path):
    """The main job on non-square (4:3) videos, in a fresh process with the threads a
    real machine gives torch (no train.threads): the driver runs torch for the guidance
    crop before the confirmation stage starts its processes, which once deadlocked a
    forked child (issue 9). It must end, with its tables."""
    make_ucf50(tmp_path / "data", classes=("A", "B", "C"), groups=10, n=12)
    args = [
        sys.executable,
        "-m",
        "rsexp.cli",
        "sweep",
        "--config",
        str(ROOT / "sweeps" / "ucf50.yaml"),
        "--trials",
        "2",
        "--workers",
        "1",
        "data.root=data",
        "data.num_frames=4",
        "data.frame_size=16",
        "data.decode_workers=1",
        "model.name=tsvit",
        "model.embed_dim=16",
        "model.depth=1",
        "model.temporal_depth=1",
        "model.num_heads=2",
        "model.patch_size=4",
        "track.backends=[local]",
        "sweep.epochs=1",
        "train.epochs=1",  # the confirmation runs
        "sweep.confirm_seeds=[0]",
        "sweep.ablation_seeds=[0]",
        # 4 frames hold the paper's segments apart only for immediate >= 0.2
        "sweep.space.immediate={low: 0.2, high: 0.3}",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    comparison = (
        tmp_path / "runs" / "ucf50" / "sweep-ucf50-tsvit" / "reports" / "comparison.md"
    ).read_text()
    assert "| TSViT |" in comparison and "| TSViT + RS |" in comparison
    assert (
        "| + both |"
        in (
            tmp_path / "runs" / "ucf50" / "sweep-ucf50-tsvit" / "reports" / "ablation.md"
        ).read_text()
    )
    # the driver decoded the cache once; the workers and confirmation runs reused it:
    # 15 training clips (5 groups x 3 classes; confirmation runs train on all of them),
    # 3 validation clips (1 group held out of training) + 15 test clips (fold 1)
    metas = list((tmp_path / "data" / "ucf50" / "cache").glob("*/meta.jsonl"))
    assert sorted(len(m.read_text().splitlines()) for m in metas) == [15, 18]
    # model selection never saw the test split; the confirmation runs report on it
    sweep_root = tmp_path / "runs" / "ucf50" / "sweep-ucf50-tsvit"
    for trial in sweep_root.glob("trial-*"):
        splits = json.loads((trial / "splits.json").read_text())
        assert splits["val"] and splits["test"]
        assert not set(splits["test"]) & (set(splits["val"]) | set(splits["train"]))
        groups = {c.rsplit("_g", 1)[1][:2] for c in splits["val"]}
        assert not any(f"_g{g}_" in c for g in groups for c in splits["train"])
        records = [json.loads(x) for x in (trial / "metrics.jsonl").read_text().splitlines()]
        assert all("val/top1" in r for r in records)
    for run in (sweep_root / "confirm").iterdir():
        summary = json.loads((run / "summary.json").read_text())
        assert "test/top1" in summary and "val/top1" not in summary
        assert json.loads((run / "splits.json").read_text())["val_fraction"] == 0
    assert "Metrics on the test split" in comparison


def test_cli_prepare_reports_what_is_ready_and_names_bad_input(tmp_path, capsys):
    base = make_ucf50(tmp_path / "data", classes=("A", "B"), groups=8, n=12)
    (base / "videos" / "B" / "v_B_g08_c01.avi").write_bytes(b"RIFF")  # cut right after
    args = ["prepare", "--config", str(ROOT / "sweeps" / "ucf50.yaml")]
    args += [f"data.root={tmp_path / 'data'}", "data.frame_size=16", "data.decode_workers=1"]
    with pytest.warns(UserWarning, match="ucf50: left out 1 clips"):
        assert main([*args, "data.bad_videos=skip"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    expected = "data ucf50 (split 1): 3 train / 2 val / 10 test clips, 2 classes, 1 bad videos"
    assert expected in out
    cache = tmp_path / "data" / "ucf50" / "cache"
    joined = "".join(out.split())  # the console wraps long paths anywhere
    assert (
        f"{cache}/train1-k16-s18-jpeg-v2(" in joined and f"{cache}/eval1-k8-s16-jpeg-v2(" in joined
    )
    assert "of training frames guided (coverage 0.6)" in out
    (base / "videos" / "A" / "v_A.avi").touch()
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "v_A.avi: the name does not end in _gNN_cNN" in err


def test_a_decoder_crash_is_pinned_on_its_video_and_the_rest_goes_on():
    items = [f"v{i}" for i in range(30)]
    items[13] = "boom"
    results = list(run_pool(segfault_on_boom, items, 2, lambda i: (i, "bad", f"/data/{i}.avi")))
    assert [r[0] for r in results] == items  # every item once, in order
    bad = [r for r in results if r[1] == "bad"]
    assert bad == [("boom", "bad", "/data/boom.avi: the decoder crashed on it (its process died)")]
    assert all(r[2] == r[0].upper() for r in results if r[1] == "ok")
