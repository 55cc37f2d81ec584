"""Guidance: the released frame keys read right, and ``rsexp guidance`` through the real
``openai`` client against a local scripted server (good answers, bad replies, 429/5xx,
a kill mid-run, the cost cap, the dry run), the offline annotators, and end to end into
a training run."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from openai_server import Server, cells_reply, completion
from PIL import Image
from videos import TINY_TSVIT, make_desktop_assembly, make_ucf50, real_cfg, write_video

from rsexp.cli import main
from rsexp.config import load_config
from rsexp.data import build_raw
from rsexp.data.transforms import crop_mask
from rsexp.experiment import build_data
from rsexp.guidance.annotate import annotate, journal_path
from rsexp.guidance.frames import GUTTER, frame_keys_of, grid_image
from rsexp.guidance.store import GuidanceFormatError, GuidanceStore, key_frames, meta_path

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-THIS-MUST-NEVER-BE-WRITTEN"
CLASSES = ("Biking", "Diving")


def by_class(body, frame, attempt):
    """Cell (0, c) for class c: which class, from the prompt's label."""
    text = body["messages"][1]["content"][0]["text"]
    c = next(i for i, name in enumerate(CLASSES) if f'"{name}"' in text)
    return 200, cells_reply([[0, c]]), {}


@pytest.fixture
def ucf(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    make_ucf50(tmp_path / "data", classes=CLASSES, groups=10, n=24)
    (tmp_path / "data" / "ucf50" / "guidance.json").unlink()  # we make our own
    return tmp_path


def test_released_position_keys_map_to_k_times_n_over_10(tmp_path):
    """A 175-frame video and a released-format file keyed "0".."9", cell k on key k:
    every sampled frame gets the nearest position's cell (read as frame numbers, as
    before, about 1 sampled frame in 8 found one)."""
    base = tmp_path / "data" / "ucf50"
    for cls in CLASSES:
        for g in range(1, 11):
            write_video(base / "videos" / cls / f"v_{cls}_g{g:02d}_c01.avi", n=175)
    guidance = {
        f"v_{cls}_g{g:02d}_c01": {
            str(k): {"text": json.dumps({"key_regions": [[k // 4, k % 4]]})} for k in range(10)
        }
        for cls in CLASSES
        for g in range(1, 11)
    }
    (base / "guidance.json").write_text(json.dumps(guidance))
    extra = ["guidance.coverage=1.0", "data.augment=false", "data.num_frames=8"]
    cfg = real_cfg(tmp_path, *extra)
    data = build_data(cfg)
    # all but the frames past 153 + max_frame_gap (the last key is frame 9 * 17)
    assert data.guided_frame_fraction > 0.9
    raw = build_raw("ucf50", cfg.data, 4).train  # the sampled video frames, the crop
    masks = data.train.masks
    for clip, fr, box, hw in zip(masks, raw.frames, raw.boxes, raw.frame_hw, strict=True):
        for t, f in enumerate(fr):
            k = int(np.argmin(np.abs(np.arange(10) * 17 - f)))
            want = torch.zeros(16, dtype=torch.bool)
            if abs(k * 17 - f) <= cfg.guidance.max_frame_gap:
                want[k] = True  # cell k on the full frame, then through the centre crop
                want = crop_mask(want[None], tuple(box), tuple(int(x) for x in hw), 4)[0]
            assert torch.equal(clip[t], want)
    with pytest.warns(UserWarning, match="guides only 1.% of their sampled frames"):
        as_frames = build_data(real_cfg(tmp_path, *extra, "guidance.frame_keys=frame"))
    assert as_frames.guided_frame_fraction < 0.25


def test_fps_and_frame_keys():
    assert key_frames([0, 1, 4], "fps:10", 10, 0, 25.0).tolist() == [0, 2, 10]
    assert key_frames([0, 1, 4], "frame", 10, 0, 0.0).tolist() == [0, 1, 4]
    assert key_frames([0, 9], "position", 10, 175, 0.0).tolist() == [0, 153]
    assert frame_keys_of("fps:10", 10, 11, 25.0) == [(0, 0), (1, 2), (2, 5), (3, 8), (4, 10)]
    assert frame_keys_of("position", 10, 175, 25.0)[-1] == (9, 153)
    store = GuidanceStore(grid=4, regions={"v": {0: ((0, 0),), 1: ((1, 1),)}}, frame_keys="fps:10")
    mask, _ = store.clip_mask("v", [0, 2, 3], max_frame_gap=0, length=30, fps=25.0)
    assert mask.nonzero()[1].tolist() == [0, 5]
    with pytest.raises(GuidanceFormatError, match="frame rate"):
        store.clip_mask("v", [0], length=30, fps=0.0)


def test_a_file_written_with_other_frame_keys_is_refused(tmp_path):
    store = GuidanceStore(grid=4, regions={"v": {0: ((0, 0),)}}, frame_keys="frame")
    store.save(tmp_path / "g.json")
    assert json.loads(meta_path(tmp_path / "g.json").read_text())["frame_keys"] == "frame"
    with pytest.raises(GuidanceFormatError, match="set guidance.frame_keys=frame"):
        GuidanceStore.load(tmp_path / "g.json", frame_keys="position")


def test_grid_image_has_white_gutters_and_fits(tmp_path):
    frame = np.full((240, 320, 3), 40, np.uint8)
    img = Image.open(io.BytesIO(grid_image(frame, 4, 200)))
    assert img.format == "JPEG" and max(img.size) <= 200
    arr = np.asarray(img).astype(int)
    w = img.size[0]
    cell = (w - 3 * GUTTER) / 4
    gutter_x = int(cell + GUTTER / 2)
    assert arr[:, gutter_x].mean() > 240 and arr[:, int(cell / 2)].mean() < 80


def test_openai_guidance_then_training_end_to_end(ucf, capsys):
    with Server(by_class) as srv:
        over = [f"guidance.openai.base_url={srv.url}", "guidance.coverage=0.6"]
        cfg_args = ["--config", str(ROOT / "sweeps" / "ucf50.yaml"), f"data.root={ucf / 'data'}"]
        small = ["data.num_frames=4", "data.frame_size=32", "data.decode_workers=1"]
        assert main(["guidance", *cfg_args, *small, *over]) == 0
        asked = srv.frames_asked()
    out = ucf / "data" / "ucf50" / "guidance.json"
    store = GuidanceStore.load(out)
    meta = json.loads(meta_path(out).read_text())
    # training videos only (groups 6-10 of split 1), each asked once per position
    assert len(asked) == len(set(asked)) == 10 * len(store)
    assert all(int(a.split("_g")[1][:2]) > 5 for a in asked)
    assert meta["annotator"] == "openai" and meta["settings"]["model"] == "gpt-4.1-mini"
    assert meta["settings"]["prompt_version"] and meta["prompt"]["system"]
    assert meta["tokens"] == {"input": 900 * len(asked), "output": 20 * len(asked)}
    assert meta["usd"] == pytest.approx(len(asked) * (900 * 0.4 + 20 * 1.6) / 1e6)
    assert {fr["9"] for fr in meta["frames"].values()} == {18}  # 9 * (24 // 10)
    # every request: one JPEG grid image within the size limit, the label in the prompt
    for r in srv.requests:
        parts = r["json"]["messages"][1]["content"]
        images = [p for p in parts if p["type"] == "image_url"]
        assert len(images) == 1
        b64 = images[0]["image_url"]["url"].split(",", 1)[1]
        import base64

        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert img.format == "JPEG" and max(img.size) <= 768
        assert r["json"]["response_format"]["type"] == "json_schema"
        assert r["headers"]["authorization"] == f"Bearer {KEY}"
    # training picks up exactly these videos: 60 % of its clips guided
    code = main(
        [
            "train",
            *cfg_args,
            *small,
            "train.epochs=1",
            "train.threads=1",
            "data.batch_size=6",
            "data.num_workers=0",
            *TINY_TSVIT,
            "model.patch_size=8",
            "guidance.coverage=0.6",
            "track.backends=[mlflow]",
            f"train.runs_dir={ucf / 'runs'}",
        ]
    )
    assert code == 0
    summary = json.loads(next((ucf / "runs").rglob("summary.json")).read_text())
    assert summary["guidance/frac_frames"] == pytest.approx(0.6, abs=0.05)
    for f in [
        *ucf.rglob("*.json"),
        *ucf.rglob("*.jsonl"),
        *ucf.rglob("*.db"),
        *ucf.rglob("*.yaml"),
    ]:
        assert KEY.encode() not in f.read_bytes(), f


def test_bad_replies_are_retried_once_then_recorded(ucf):
    def reply(body, frame, attempt):
        video, key = frame.split("#")
        kind = int(key) % 5
        if kind == 0:  # malformed JSON twice: recorded
            return 200, completion("{key_regions: oops"), {}
        if kind == 1:  # out of range once, then fine
            return 200, cells_reply([[9, 9]] if attempt == 1 else [[1, 1]]), {}
        if kind == 2:  # a refusal, twice
            return 200, completion(None, refusal="I cannot help with that"), {}
        if kind == 3:  # 429 (retry-after 10 ms), then fine
            if attempt == 1:
                return 429, {"error": {"message": "slow down"}}, {"retry-after-ms": "10"}
            return 200, cells_reply([[2, 2]]), {}
        return 500, {"error": {"message": "boom"}}, {}  # until the retries are spent

    with Server(reply) as srv:
        cfg = real_cfg(
            ucf,
            f"guidance.openai.base_url={srv.url}",
            "guidance.openai.max_retries=1",
            "guidance.coverage=0.2",
        )
        summary = annotate(cfg)
        asked = srv.frames_asked()
    n = summary.videos * 10
    assert summary.failures == {"json": n // 5, "refusal": n // 5, "http_500": n // 5}
    assert summary.answered == 2 * n // 5
    journal = [json.loads(x) for x in journal_path(summary.path).read_text().splitlines()[1:]]
    assert {r["raw"] for r in journal if r.get("failure") == "json"} == {"{key_regions: oops"}
    attempts = {f: asked.count(f) for f in set(asked)}
    assert {attempts[f] for f in attempts if f.endswith(("#0", "#5"))} == {2}  # asked again once
    assert {attempts[f] for f in attempts if f.endswith(("#4", "#9"))} == {2}  # 1 + 1 retry
    store = GuidanceStore.load(summary.path)
    answered = {(v, k) for v, fr in store.regions.items() for k in fr}
    assert all(k % 5 in (1, 3) for _, k in answered) and len(answered) == 2 * n // 5


def test_killed_mid_run_resumes_without_asking_twice(ucf):
    with Server(by_class, delay=0.15) as srv:
        args = [
            sys.executable,
            "-m",
            "rsexp.cli",
            "guidance",
            "--config",
            str(ROOT / "sweeps" / "ucf50.yaml"),
            f"data.root={ucf / 'data'}",
            f"guidance.openai.base_url={srv.url}",
            "guidance.openai.concurrency=2",
        ]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        journal = ucf / "data" / "ucf50" / "guidance.journal.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline:
            if journal.is_file() and len(journal.read_text().splitlines()) > 8:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = len(srv.frames_asked())
        srv.delay = 0
        assert main(args[3:]) == 0
        asked = srv.frames_asked()
    done_before = len(journal.read_text().splitlines()) - 1
    out = ucf / "data" / "ucf50" / "guidance.json"
    store = GuidanceStore.load(out)
    total = 10 * len(store)
    assert done_before == total and sum(len(f) for f in store.regions.values()) == total
    # only the requests in flight at the kill (at most 2) were asked again
    assert len(asked) - total <= 2 and first < total
    assert len(set(asked)) == total


def test_cost_cap_stops_cleanly_with_everything_kept(ucf, capsys):
    with Server(lambda b, f, a: (200, cells_reply([[0, 0]]), {})) as srv:
        cfg_over = [
            f"guidance.openai.base_url={srv.url}",
            "guidance.openai.concurrency=1",
            "guidance.openai.price_input_per_mtok=10000",  # $9 per request
            "guidance.openai.max_usd=40",
        ]
        code = main(
            [
                "guidance",
                "--config",
                str(ROOT / "sweeps" / "ucf50.yaml"),
                f"data.root={ucf / 'data'}",
                *cfg_over,
            ]
        )
        asked = len(srv.frames_asked())
    assert code == 1
    assert "cost cap guidance.openai.max_usd=40 reached" in " ".join(
        capsys.readouterr().out.split()
    )
    assert asked == 4  # the fifth would cross the cap
    store = GuidanceStore.load(ucf / "data" / "ucf50" / "guidance.json")
    assert sum(len(f) for f in store.regions.values()) == 4


def test_dry_run_sends_nothing_and_estimates_cost(ucf, capsys):
    with Server(by_class) as srv:
        code = main(
            [
                "guidance",
                "--dry-run",
                "--config",
                str(ROOT / "sweeps" / "ucf50.yaml"),
                f"data.root={ucf / 'data'}",
                f"guidance.openai.base_url={srv.url}",
                "guidance.coverage=1.0",
            ]
        )
        assert code == 0 and srv.requests == []
    out = " ".join(capsys.readouterr().out.split())
    assert "nothing sent" in out and "200" in out  # 20 training videos x 10 positions
    assert not list((ucf / "data" / "ucf50").glob("guidance*"))


def test_missing_api_key_is_a_clear_error(ucf, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY")
    code = main(
        ["guidance", "--config", str(ROOT / "sweeps" / "ucf50.yaml"), f"data.root={ucf / 'data'}"]
    )
    assert code == 2 and "OPENAI_API_KEY is not set" in capsys.readouterr().err


def test_oracle_noise_and_motion_annotators_on_synthetic(tmp_path):
    from conftest import TINY

    base = [*TINY, f"data.root={tmp_path / 'data'}"]
    exact = annotate(
        load_config(
            None, [*base, "guidance.annotator=oracle", f"guidance.path={tmp_path / 'o.json'}"]
        )
    )
    noisy = annotate(
        load_config(
            None,
            [
                *base,
                "guidance.annotator=oracle",
                "guidance.noise.drop=0.5",
                "guidance.noise.add=0.1",
                f"guidance.path={tmp_path / 'n.json'}",
            ],
        )
    )
    motion = annotate(
        load_config(
            None, [*base, "guidance.annotator=motion", f"guidance.path={tmp_path / 'm.json'}"]
        )
    )
    a, b, m = (GuidanceStore.load(s.path) for s in (exact, noisy, motion))
    assert json.loads(meta_path(noisy.path).read_text())["settings"] == {
        "noise.drop": 0.5,
        "noise.add": 0.1,
    }

    def cells(s):
        return {(v, k, c) for v, fr in s.regions.items() for k, cs in fr.items() for c in cs}

    ca, cb, cm = cells(a), cells(b), cells(m)
    assert 0.3 < len(ca & cb) / len(ca) < 0.7 and cb - ca  # about half dropped, some added
    assert len(cm & ca) / len(cm) > 0.3  # motion finds the moving actor often, not always
    # the exact oracle at noise 0 gives the training data's own guidance
    data = build_data(load_config(None, base))
    own = GuidanceStore.load(data.guidance_path, frame_keys="position")
    assert all(own.regions[v] == a.regions[v] for v in a.regions)


def test_desktop_assembly_motion_guidance_at_10_fps(tmp_path):
    """Long-video layout, clip ids with "@": every training video annotated at 10 fps
    (free motion annotator), the test video never; training finds every frame guided."""
    base = make_desktop_assembly(tmp_path / "data")
    (base / "guidance.json").unlink()  # we make our own
    cfg_path = str(ROOT / "sweeps" / "desktop_assembly.yaml")
    over = [
        f"data.root={tmp_path / 'data'}",
        "data.num_frames=4",
        "data.frame_size=16",
        "data.decode_workers=1",
        "guidance.annotator=motion",
    ]
    assert main(["guidance", "--config", cfg_path, *over]) == 0
    out = tmp_path / "data" / "desktop_assembly" / "guidance.json"
    store = GuidanceStore.load(out, frame_keys="fps:10")
    meta = json.loads(meta_path(out).read_text())
    assert sorted(store.regions) == ["2020-03-07_desk07", "2020-03-07_desk09"]  # not desk02
    assert meta["frame_keys"] == "fps:10" and meta["annotator"] == "motion"
    assert sorted(meta["frames"]["2020-03-07_desk07"].values())[-1] == 58  # round(23 * 2.5)
    assert all(len(f) == 24 for f in store.regions.values())  # 60 frames at 25 fps -> 10 fps
    data = build_data(load_config(cfg_path, over))
    assert data.guided_frame_fraction == 1.0


def test_batch_api_submits_polls_and_collects_at_half_price(ucf):
    over = [
        "guidance.openai.batch=true",
        "guidance.openai.batch_poll_s=0.05",
        "guidance.openai.batch_max_requests=30",
        "guidance.coverage=0.6",
    ]
    with Server(by_class, polls_to_finish=2) as srv:
        summary = annotate(real_cfg(ucf, f"guidance.openai.base_url={srv.url}", *over))
        n = summary.videos * 10
        assert len(srv.batches) == -(-n // 30)  # batches of at most 30 requests
        assert all(b["status"] == "completed" for b in srv.batches.values())
        assert len(srv.requests) == n and all(r["frame"].startswith("r") for r in srv.requests)
        # run again: everything is answered, nothing is submitted
        annotate(real_cfg(ucf, f"guidance.openai.base_url={srv.url}", *over))
        assert len(srv.batches) == -(-n // 30) and len(srv.requests) == n
    store = GuidanceStore.load(summary.path)
    assert sum(len(f) for f in store.regions.values()) == n == summary.answered
    assert summary.usd == pytest.approx(n * (900 * 0.4 + 20 * 1.6) / 1e6 * 0.5)
    state = json.loads(summary.path.with_name("guidance.batches.json").read_text())
    assert all(b["collected"] for b in state["batches"])


def test_batches_survive_a_restart_without_being_submitted_again(ucf):
    with Server(by_class, polls_to_finish=10**9) as srv:  # never finishes, at first
        args = [
            sys.executable, "-m", "rsexp.cli", "guidance", "--config",
            str(ROOT / "sweeps" / "ucf50.yaml"), f"data.root={ucf / 'data'}",
            f"guidance.openai.base_url={srv.url}", "guidance.openai.batch=true",
            "guidance.openai.batch_poll_s=0.05", "guidance.openai.batch_max_requests=50",
        ]  # fmt: skip
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        state = ucf / "data" / "ucf50" / "guidance.batches.json"
        deadline = time.time() + 120
        while time.time() < deadline:  # every batch submitted, then polling
            if state.is_file() and all(b["id"] for b in json.loads(state.read_text())["batches"]):
                if sum(b["polls"] for b in srv.batches.values()) >= 4:
                    break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        submitted = len(srv.batches)
        srv.polls_to_finish = 0
        assert main(args[3:]) == 0
        assert len(srv.batches) == submitted  # polled and collected, not submitted again
    store = GuidanceStore.load(ucf / "data" / "ucf50" / "guidance.json")
    total = sum(len(f) for f in store.regions.values())
    assert total == 10 * len(store) and len(srv.requests) == total


def test_every_registered_annotator_keeps_the_annotator_contract(tmp_path, monkeypatch):
    """Each entry of the registry: an Annotator of its own name, made from a config,
    whose settings are JSON, that answers a frame of the synthetic data with an Answer
    (the OpenAI one through the real client, against a local server)."""
    from conftest import TINY

    from rsexp.guidance.annotate import make_annotator, training_sources
    from rsexp.guidance.annotators import ANNOTATORS, Annotator, Answer
    from rsexp.guidance.frames import VideoFrames, frame_jobs

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert {"openai", "oracle", "motion"} <= set(ANNOTATORS.names())
    with Server(lambda body, frame, attempt: (200, cells_reply([[1, 2]]), {})) as server:
        for name in ANNOTATORS.names():
            over = [*TINY, f"data.root={tmp_path / 'data'}", f"guidance.annotator={name}",
                    f"guidance.path={tmp_path / name}.json",
                    f"guidance.openai.base_url={server.url}"]  # fmt: skip
            cfg = load_config(None, over)
            sources, _, cells, positions = training_sources(cfg)
            annotator = make_annotator(cfg, cells)
            assert isinstance(annotator, Annotator) and annotator.name == name
            json.dumps(annotator.settings())
            annotator.connect()
            source = sources[0]
            reader = VideoFrames(source)
            job = next(iter(frame_jobs(source, reader, "position", positions or 10)))
            near = annotator.frames_needed(job, reader.length)
            answer = annotator.ask(job, reader.read(near) if near else None)
            assert isinstance(answer, Answer) and answer.failure in ("", None), answer
            assert all(0 <= r < 4 and 0 <= c < 4 for r, c in answer.cells)
