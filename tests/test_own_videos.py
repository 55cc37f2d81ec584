"""Your own videos through the same commands: a folder of class folders (320x240 mp4 and
avi, portrait webm), split folders, list files with a bad line, guidance keyed by
relative path, a sweep down to its tables; and a plugin package, installed, whose
dataset the sweep's workers use without an import hack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from openai_server import Server, cells_reply
from videos import TINY_TSVIT, write_video

from rsexp.cli import main
from rsexp.config import load_config
from rsexp.data import build_raw
from rsexp.errors import DatasetLayoutError

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("jump", "run", "wave")
SMALL = ["data.num_frames=6", "data.frame_size=32", "data.decode_workers=1",
         "data.batch_size=4", *TINY_TSVIT, "train.threads=1"]  # fmt: skip


def make_folder(root: Path, per_class: int = 6, split: str | None = None) -> Path:
    """``root/<class>/s<k>_v<i>.<ext>`` (or under ``split/``): 320x240 mp4 and avi,
    portrait 136x240 webm; subject ``s<k>`` shared by videos of a class."""
    for c, cls in enumerate(CLASSES):
        for i in range(per_class):
            ext = (".mp4", ".avi", ".webm")[i % 3]
            hw = (240, 136) if ext == ".webm" else (240, 320)
            folder = root / split / cls if split else root / cls
            write_video(folder / f"s{i % 3}_v{i:02d}{ext}", n=24, hw=hw, tint=70 * c)
    return root


def test_a_folder_of_videos_trains_guides_and_sweeps_to_its_tables(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    vids = make_folder(tmp_path / "vids")
    base = ["-c", str(ROOT / "sweeps" / "folder.yaml"), f"data.path={vids}", *SMALL,
            "data.num_workers=0", "data.augment=false", "data.hflip=false",
            "data.group_by=^[^/]+/(s\\d+)_"]  # fmt: skip
    assert main(["prepare", *base, "loss.lambda_s=0", "loss.lambda_t=0"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "3 classes" in out and "train" in out, out
    # guidance keyed by the path relative to data.path, without its suffix
    assert main(["guidance", *base, "guidance.annotator=motion"]) == 0
    keys = set(json.loads((vids / "guidance.json").read_text()))
    assert keys and all(k.split("/")[0] in CLASSES and "." not in k for k in keys), keys
    # a group (subject s<k> of a class) is never on both sides of a split
    cfg = load_config(base[1], base[2:])
    raw = build_raw("folder", cfg.data, 4)
    sides = {s: {i.split("_")[0] for i in getattr(raw, s).ids} for s in ("train", "val", "test")}
    assert not (sides["train"] & sides["test"]) and not (sides["val"] & sides["test"])
    # baseline and RS runs, then a 2-worker sweep down to its tables
    for loss in (["loss.lambda_s=0", "loss.lambda_t=0"], []):
        assert main(["train", *base, "train.epochs=1", *loss]) == 0
    sweep = ["sweep", "--trials", "2", "--workers", "2", *base, "sweep.epochs=1",
             "train.epochs=1", "sweep.confirm_seeds=[0]", "track.backends=[local]"]  # fmt: skip
    assert main(sweep) == 0
    reports = tmp_path / "runs" / "folder" / "sweep-folder-tsvit" / "reports"
    assert "TSViT + RS" in (reports / "comparison.md").read_text()
    overlays = list((tmp_path / "runs" / "folder").rglob("overlays/*/epoch_0001.png"))
    assert overlays and all(p.parent.parent.name == "overlays" for p in overlays)


def test_split_folders_and_list_files(tmp_path, capsys):
    split = make_folder(tmp_path / "split", per_class=3, split="train")
    make_folder(split, per_class=1, split="test")
    cfg = load_config(None, ["data.name=folder", f"data.path={split}", *SMALL])
    raw = build_raw("folder", cfg.data, 4)
    assert len(raw.test.ids) == 3 and all(i.startswith("test/") for i in raw.test.ids)
    assert raw.class_names == list(CLASSES)
    # a list with a bad line, an unknown label and a missing file: every problem named
    vids = make_folder(tmp_path / "vids", per_class=3)
    rels = sorted(p.relative_to(vids).as_posix() for p in vids.rglob("*.*"))
    good = [f"{r} {r.split('/')[0]}" for r in rels]
    bad = tmp_path / "train.txt"
    bad.write_text("\n".join([*good[:4], "only-one-field", "run/s0_v00.mp4 dance",
                              "gone/nothing.mp4 jump", *good[4:]]) + "\n")  # fmt: skip
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    over = ["data.name=list", f"data.path={vids}", f"data.train_list={bad}",
            f"data.classes={tmp_path / 'classes.txt'}", *SMALL]  # fmt: skip
    with pytest.raises(DatasetLayoutError) as e:
        build_raw("list", load_config(None, over).data, 4)
    msg = str(e.value)
    assert f"{bad}, line 5: expected 'relative/path label'" in msg
    assert f"{bad}, line 6: label 'dance'" in msg and f"{bad}, line 7:" in msg, msg
    # a CSV with a split column, integer labels and a classes file
    rows = ["path,label,split"] + [
        f"{r},{CLASSES.index(r.split('/')[0])},{'test' if r.endswith('02.webm') else 'train'}"
        for r in rels
    ]
    (tmp_path / "all.csv").write_text("\n".join(rows) + "\n")
    over = ["data.name=list", f"data.path={vids}", f"data.train_list={tmp_path / 'all.csv'}",
            f"data.classes={tmp_path / 'classes.txt'}", *SMALL]  # fmt: skip
    raw = build_raw("list", load_config(None, over).data, 4)
    assert sorted(raw.test.ids) == [f"{c}/s2_v02" for c in CLASSES]
    assert raw.class_names == list(CLASSES)


def test_openai_guidance_on_your_own_videos(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000")
    vids = make_folder(tmp_path / "vids", per_class=3)
    with Server(lambda body, frame, attempt: (200, cells_reply([[0, 1]]), {})) as server:
        over = ["data.name=folder", f"data.path={vids}", *SMALL, "guidance.annotator=openai",
                f"guidance.openai.base_url={server.url}",
                "guidance.frames_per_video=2"]  # fmt: skip
        assert main(["guidance", *over]) == 0
        asked = server.frames_asked()
    assert asked and all(f.split("#")[0].split("/")[0] in CLASSES for f in asked), asked
    store = json.loads((vids / "guidance.json").read_text())
    assert all(k.count("/") == 1 for k in store)


PLUGIN = """
from dataclasses import dataclass, replace

from rsexp.config import ConfigError, register_section
from rsexp.data import register_dataset
from rsexp.data.builders import synthetic


@dataclass(frozen=True)
class ToyConfig:
    classes: int = 3

    def __post_init__(self):
        if not 2 <= self.classes <= 8:
            raise ConfigError("data.toy.classes: must be in [2, 8]")


register_section("data.toy", ToyConfig)


@register_dataset(title="a plugin's toy data", files=False)
def toy(data_cfg, grid, progress=None):
    toy = data_cfg.sections.get("toy", ToyConfig())
    syn = replace(data_cfg.synthetic, num_classes=toy.classes)
    return synthetic(replace(data_cfg, synthetic=syn), grid, progress)
"""


def install(tmp_path: Path, name: str, code: str) -> Path:
    """A plugin package with a ``pyproject.toml`` declaring its ``rsexp.plugins`` entry
    point, installed (pip) into a folder of its own on ``PYTHONPATH``."""
    pkg = tmp_path / f"src-{name}"
    (pkg / name).mkdir(parents=True)
    (pkg / name / "__init__.py").write_text(code)
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name.replace("_", "-")}"\nversion = "0.1"\n'
        f'[project.entry-points."rsexp.plugins"]\n{name} = "{name}"\n'
        f'[tool.setuptools]\npackages = ["{name}"]\n'
    )
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(pkg)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return site


def test_a_plugin_package_adds_a_dataset_the_sweep_workers_use(tiny, tmp_path):
    site = install(tmp_path, "rsexp_toy", PLUGIN)
    install(tmp_path, "rsexp_broken", "raise ImportError('needs a library nobody has')\n")
    env = {**os.environ, "PYTHONPATH": str(site)}

    def rsexp(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rsexp.cli", *args], cwd=tmp_path,
                              env=env, text=True, capture_output=True, timeout=600)  # fmt: skip

    listed = rsexp("models")
    assert listed.returncode == 0, listed.stderr
    assert "toy (rsexp_toy)" in " ".join(listed.stdout.split())  # with where it came from
    assert "rsexp_broken" in listed.stderr and "needs a library nobody has" in listed.stderr
    bad = rsexp("config", "data.name=toy", "data.toy.classes=12")
    assert bad.returncode == 2 and "data.toy.classes: must be in [2, 8]" in bad.stderr
    over = [*tiny, "data.name=toy", "data.toy.classes=2", "sweep.epochs=1", "train.epochs=1",
            "track.backends=[local]"]  # fmt: skip
    done = rsexp("sweep", "-c", str(ROOT / "sweeps" / "synthetic.yaml"), "--trials", "1",
                 "--trials-only", "--workers", "1", *over)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (trial,) = (tmp_path / "runs" / "toy").glob("sweep-*/trial-0000")
    summary = json.loads((trial / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["dataset"] == "toy"
    # its own typed section, kept with the run (read here without the plugin)
    assert yaml.safe_load((trial / "config.yaml").read_text())["data"]["sections"] == {
        "toy": {"classes": 2}
    }


def test_your_videos_labelled_per_frame_are_action_segmentation(tmp_path):
    """Desktop Assembly's layout anywhere (data.name=segments): with its split files, or
    without them a seeded share of the videos as the test side; frame-wise scoring."""
    import shutil

    from videos import make_desktop_assembly

    base = make_desktop_assembly(tmp_path / "mine")
    over = ["data.name=segments", f"data.path={base}", *SMALL, "data.val_fraction=0"]
    raw = build_raw("segments", load_config(None, over).data, 4)
    assert raw.test.windows is not None and raw.class_names[0] == "background"
    shutil.rmtree(base / "splits")
    raw = build_raw("segments", load_config(None, [*over, "data.test_fraction=0.34"]).data, 4)
    videos = {k.split("@")[0] for k in raw.test.windows.keys}
    assert len(videos) == 1 and raw.train.ids
