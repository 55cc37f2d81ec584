import json

import numpy as np
import pytest
import torch

from rsexp.config import SyntheticConfig
from rsexp.data.synthetic import generate_split, load_or_generate
from rsexp.data.transforms import SpatialAugment
from rsexp.guidance.grid import cells_to_mask, mask_to_cells
from rsexp.guidance.store import GuidanceFormatError, GuidanceStore, select_covered

GEN = dict(
    num_frames=6,
    size=32,
    grid=4,
    num_classes=8,
    num_distractors=2,
    object_size=5,
    noise=0.05,
    prefix="train",
)


def test_synthetic_is_deterministic_by_seed():
    a, b = generate_split(20, seed=3, **GEN), generate_split(20, seed=3, **GEN)
    np.testing.assert_array_equal(a.videos, b.videos)
    np.testing.assert_array_equal(a.cells, b.cells)
    c = generate_split(20, seed=4, **GEN)
    assert not np.array_equal(a.videos, c.videos)
    assert a.videos.shape == (20, 6, 32, 32, 3) and a.videos.dtype == np.uint8


def test_synthetic_guidance_marks_the_actor():
    s = generate_split(50, seed=0, **GEN)
    assert s.cells.any(axis=(2, 3)).all()  # the actor is on every frame
    # the actor is the only white object: its pixels lie inside the guidance cells
    white = (s.videos.min(-1) > 200).reshape(50, 6, 4, 8, 4, 8).any(axis=(3, 5))
    assert (white & ~s.cells).sum() < 0.02 * white.sum()  # noise may whiten a rare pixel
    # the actor moves in the labelled direction (class 0 = east: column grows)
    cols = (s.cells.any(axis=2) * np.arange(4)).sum(-1) / s.cells.any(axis=2).sum(-1)
    east = s.labels == 0
    assert (cols[east, -1] > cols[east, 0]).all()


def test_synthetic_cache_is_reused(tmp_path):
    cfg = SyntheticConfig(num_train=10, num_val=6, num_test=5)
    splits, cache = load_or_generate(cfg, 4, 16, 4, tmp_path)
    assert (cache / "clips.npz").is_file()
    splits2, cache2 = load_or_generate(cfg, 4, 16, 4, tmp_path)
    assert cache2 == cache
    np.testing.assert_array_equal(splits["train"].videos, splits2["train"].videos)
    assert splits2["train"].video_ids == splits["train"].video_ids
    assert [len(splits2[s].video_ids) for s in ("val", "test")] == [6, 5]
    # the test set is other clips than training and validation ones
    test = splits["test"].videos.reshape(5, -1)
    seen = np.concatenate([splits[s].videos for s in ("train", "val")]).reshape(16, -1)
    assert not (test[:, None] == seen[None]).all(-1).any()


def test_grid_round_trip():
    cells = [[0, 3], [2, 1]]
    assert mask_to_cells(cells_to_mask(cells, 4), 4) == cells


def write(tmp_path, obj, raw=False):
    p = tmp_path / "g.json"
    p.write_text(obj if raw else json.dumps(obj))
    return p


def entry(cells):
    return {"text": json.dumps({"key_regions": cells})}


def test_store_round_trip(tmp_path):
    store = GuidanceStore(grid=4, regions={"v1": {0: ((0, 1), (3, 3)), 10: ()}})
    store.save(tmp_path / "g.json")
    raw = json.loads((tmp_path / "g.json").read_text())
    assert json.loads(raw["v1"]["0"]["text"]) == {"key_regions": [[0, 1], [3, 3]]}
    back = GuidanceStore.load(tmp_path / "g.json")
    assert back.regions == store.regions


@pytest.mark.parametrize(
    "content, needle",
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "top level"),
        ({"v1": [1]}, "video 'v1'"),
        ({"v1": {"x": entry([])}}, "video 'v1', frame 'x'"),
        ({"v1": {"3": {"txt": "{}"}}}, "video 'v1', frame '3'"),
        ({"v1": {"3": {"text": "{oops"}}}, "frame '3'.*not valid JSON"),
        ({"v1": {"3": {"text": "{}"}}}, "key_regions"),
        ({"v1": {"3": entry([[1]])}}, r"\[1\] is not a \[row, col\]"),
        ({"v1": {"-1": entry([])}}, "negative"),
    ],
)
def test_store_bad_input_names_file_video_frame(tmp_path, content, needle):
    path = write(tmp_path, content, raw=isinstance(content, str))
    with pytest.raises(GuidanceFormatError, match=needle) as e:
        GuidanceStore.load(path)
    assert str(path) in str(e.value)


def test_store_drops_out_of_range_cells_with_one_warning(tmp_path):
    path = write(tmp_path, {"v": {"0": entry([[0, 0], [4, 1], [1, -1]])}})
    with pytest.warns(UserWarning, match="dropped 2 key regions"):
        store = GuidanceStore.load(path)
    assert store.regions["v"][0] == ((0, 0),)


def test_clip_mask_maps_nearest_annotated_frame():
    store = GuidanceStore(
        grid=4, regions={"v": {0: ((0, 0),), 10: ((3, 3),), 20: ()}}, frame_keys="frame"
    )
    mask, valid = store.clip_mask("v", [0, 4, 6, 9, 15, 18, 30], max_frame_gap=4)
    # 15 is 5 frames from both neighbours; 18 maps to frame 20, annotated with no cell
    assert valid.tolist() == [True, True, True, True, False, False, False]
    assert mask[0, 0] and mask[1, 0] and mask[2, 15] and mask[3, 15]
    assert mask.sum() == 4
    none_mask, none_valid = store.clip_mask("unknown", [0, 1], max_frame_gap=4)
    assert not none_valid.any() and not none_mask.any()


def test_coverage_selection_is_seeded_nested_and_sized():
    ids = [f"v{i}" for i in range(200)]
    a = select_covered(ids, 0.6, seed=0)
    assert len(a) == 120
    assert a == select_covered(list(reversed(ids)), 0.6, seed=0)
    assert select_covered(ids, 0.1, seed=0) <= a
    assert select_covered(ids, 0.6, seed=1) != a
    assert select_covered(ids, 0.0) == set() and select_covered(ids, 1.0) == set(ids)


def test_augmentation_moves_guidance_with_pixels():
    s = generate_split(8, seed=1, **GEN)
    aug = SpatialAugment(32, 4, min_scale=0.5, hflip=True)
    from rsexp.data.transforms import to_float

    agree = total = 0
    for i in range(8):
        video = to_float(torch.from_numpy(s.videos[i]))
        mask = torch.from_numpy(s.cells[i].reshape(6, 16))
        for seed in range(4):
            v2, m2 = aug(video, mask, torch.Generator().manual_seed(seed))
            assert v2.shape == video.shape and m2.shape == mask.shape
            white = (v2.min(1).values > 1.5).reshape(6, 4, 8, 4, 8).any(dim=(2, 4))
            white = white.reshape(6, 16)
            hit = white.any(-1) & m2.any(-1)
            agree += (white & m2)[hit].any(-1).sum().item()
            total += hit.sum().item()
    assert total > 50 and agree / total > 0.95  # guidance stays on the actor


def test_every_registered_dataset_keeps_the_dataset_contract(tmp_path):
    """Each entry of the registry says what it is; one read from files and missing says
    where it is expected and how to get it; the embedded one builds its splits."""
    from conftest import TINY

    from rsexp.config import ConfigError, load_config
    from rsexp.data import DATASETS, DatasetNotFoundError, build_raw

    for spec in DATASETS:
        cfg = load_config(None, [*TINY, f"data.root={tmp_path}", f"data.name={spec.name}"])
        assert spec.title and spec.origin == "rsexp"
        if spec.files and spec.check is not None:  # your own videos: data.path says where
            with pytest.raises((ConfigError, DatasetNotFoundError), match="data.path"):
                build_raw(spec.name, cfg.data, 4)
            continue
        if spec.files:
            with pytest.raises(DatasetNotFoundError, match=spec.layout.split(" ")[0]):
                build_raw(spec.name, cfg.data, 4)
            continue
        raw = build_raw(spec.name, cfg.data, 4)
        assert len(raw.train.ids) and raw.class_names and raw.digest


def test_runs_started_together_never_read_a_half_written_exact_guidance(tmp_path, monkeypatch):
    """Confirmation and paper jobs start together on one data root: each writes or reads
    the generated data's exact guidance. With every file write slowed down, four at once
    all get the whole store (CI once saw one find the metadata but not the file)."""
    import threading
    import time

    import rsexp.guidance.store as store_mod
    from rsexp.config import load_config
    from rsexp.experiment.inputs import load_guidance

    real = store_mod.write_atomic

    def slow(path, text):
        time.sleep(0.05)
        real(path, text)

    monkeypatch.setattr(store_mod, "write_atomic", slow)
    data = generate_split(6, num_frames=4, size=16, grid=4, num_classes=2, num_distractors=0,
                          object_size=4, noise=0.0, seed=0, prefix="t")  # fmt: skip
    cfg = load_config(None, [])
    path = tmp_path / "synthetic" / "guidance.json"
    got, errors = [], []

    def one():
        try:
            got.append(load_guidance(cfg, path, (data.video_ids, data.cells))[0])
        except (OSError, ValueError) as e:  # what a torn read raises
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 4
    assert all(set(s.regions) == set(data.video_ids) for s in got)
