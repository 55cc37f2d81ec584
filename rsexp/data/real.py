"""Index readers for the real datasets: which clips, which labels, which split.

Each reader reads the dataset's own index files once, strictly, and returns
:class:`VideoIndex`; a malformed line raises :class:`DatasetLayoutError` naming the file
and line. Nothing here decodes video (see :mod:`rsexp.data.video`).

Layouts under ``<data.root>/<name>/``:

- ``ucf50``: ``videos/<Class>/v_<Class>_gNN_cNN.avi``. UCF50 has no official split; its
  protocol is leave-one-group-out over 25 groups (one group = one actor/scene). rsexp
  uses 5 group-wise folds: ``data.split=k`` holds out groups 5k-4..5k (80/20, no group
  in both).
- ``ucf101``: ``videos/<Class>/v_<Class>_gNN_cNN.avi`` and the official
  ``splits/{classInd,trainlist0k,testlist0k}.txt`` (``data.split=k``, k = 1..3).
- ``ssv2``: ``videos/<id>.webm`` (or another video suffix) and
  ``labels/{labels,train,validation}.json`` as released (train on train, evaluate on
  validation).
- ``desktop_assembly``: the action-segmentation layout (as Breakfast / 50Salads):
  ``videos/<video>.<ext>``, ``groundTruth/<video>.txt`` (one action name per frame),
  ``mapping.txt`` (``<id> <name>`` lines), ``splits/{train,test}.split<k>.bundle``
  (``<video>.txt`` lines). Every maximal run of one action is a clip (its id is
  ``<video>@<start>-<end>``; its guidance key is the video).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rsexp.data.video import VIDEO_EXTENSIONS, VideoEntry
from rsexp.errors import DatasetLayoutError  # noqa: F401 (raised here)


@dataclass
class VideoIndex:
    train: list[VideoEntry]
    val: list[VideoEntry]
    class_names: list[str]


def _lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise DatasetLayoutError(f"{path}: file not found")
    return [(n, s.strip()) for n, s in enumerate(path.read_text().splitlines(), 1) if s.strip()]


def _check_split(name: str, split: int, n: int) -> None:
    if not 1 <= split <= n:
        raise DatasetLayoutError(f"data.split={split}: {name} has splits 1..{n}")


def _videos_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DatasetLayoutError(f"{folder}: folder not found")
    return {p.stem: p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS}


_UCF_GROUP = re.compile(r"_g(\d+)_c(\d+)$")


def ucf50(root: Path, split: int) -> VideoIndex:
    _check_split("UCF50", split, 5)
    vdir = root / "videos"
    classes = sorted(d.name for d in vdir.iterdir() if d.is_dir())
    if not classes:
        raise DatasetLayoutError(f"{vdir}: no class folders (expected videos/<Class>/*.avi)")
    held_out = range(5 * split - 4, 5 * split + 1)
    train, val = [], []
    groups: set[int] = set()
    for label, cls in enumerate(classes):
        for f in sorted((vdir / cls).iterdir()):
            if f.suffix.lower() not in VIDEO_EXTENSIONS:
                continue
            m = _UCF_GROUP.search(f.stem)
            if m is None:
                raise DatasetLayoutError(
                    f"{f}: the name does not end in _gNN_cNN, so its group (actor) is "
                    f"unknown and the group-wise split cannot place it"
                )
            entry = VideoEntry(f.stem, f, label, f.stem)
            (val if int(m[1]) in held_out else train).append(entry)
            groups.add(int(m[1]))
    for side, entries in (("validation", val), ("training", train)):
        if not entries:
            raise DatasetLayoutError(
                f"UCF50 fold {split}: the {side} side is empty. Fold k validates on actor "
                f"groups {held_out.start}-{held_out.stop - 1} and trains on the others, but "
                f"{vdir} has videos of groups {sorted(groups)} only; choose another "
                f"data.split (1-5) or add the missing groups"
            )
    return VideoIndex(train, val, classes)


def ucf101(root: Path, split: int) -> VideoIndex:
    _check_split("UCF101", split, 3)
    sdir, vdir = root / "splits", root / "videos"
    classes: list[str] = []
    for n, line in _lines(sdir / "classInd.txt"):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
            raise DatasetLayoutError(
                f"{sdir / 'classInd.txt'}, line {n}: expected '{len(classes) + 1} <Class>', "
                f"got {line!r}"
            )
        classes.append(parts[1])
    label_of = {c.lower(): i for i, c in enumerate(classes)}
    listing: dict[Path, dict[str, Path]] = {}

    def resolve(rel: str) -> Path:
        path = vdir / rel
        if path.exists():
            return path
        # The release spells a few files differently in the lists and on disk
        # (HandStandPushups vs HandstandPushups); match case-insensitively, once, here.
        folder = path.parent
        if folder not in listing:
            names = folder.iterdir() if folder.is_dir() else []
            listing[folder] = {p.name.lower(): p for p in names}
        return listing[folder].get(path.name.lower(), path)

    def read(list_file: Path) -> list[VideoEntry]:
        out = []
        for n, line in _lines(list_file):
            rel = line.split()[0]
            cls = rel.split("/")[0].lower()
            if "/" not in rel or cls not in label_of:
                raise DatasetLayoutError(
                    f"{list_file}, line {n}: {rel!r} is not <Class>/<video> with a class "
                    f"from classInd.txt"
                )
            # ids (and guidance keys) are the file's name on disk, which the guidance
            # annotator saw, not the list's spelling of it
            path = resolve(rel)
            out.append(VideoEntry(path.stem, path, label_of[cls], path.stem))
        return out

    train = read(sdir / f"trainlist0{split}.txt")
    val = read(sdir / f"testlist0{split}.txt")
    return VideoIndex(train, val, classes)


def ssv2(root: Path, split: int) -> VideoIndex:
    _check_split("Something-Something v2", split, 1)
    ldir, vdir = root / "labels", root / "videos"

    def load(name: str):
        path = ldir / name
        if not path.is_file():
            raise DatasetLayoutError(f"{path}: file not found")
        try:
            return path, json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise DatasetLayoutError(f"{path}: not valid JSON: {e}") from e

    path, labels = load("labels.json")
    if not isinstance(labels, dict) or not all(str(v).isdigit() for v in labels.values()):
        raise DatasetLayoutError(f"{path}: expected {{template: 'index'}}")
    label_of = {k: int(v) for k, v in labels.items()}
    classes = [k for k, _ in sorted(label_of.items(), key=lambda kv: kv[1])]
    if sorted(label_of.values()) != list(range(len(classes))):
        raise DatasetLayoutError(f"{path}: class indices are not 0..{len(classes) - 1}")

    videos = _videos_by_stem(vdir)  # released as .webm; some mirrors re-encode to .mp4

    def read(name: str) -> list[VideoEntry]:
        path, items = load(name)
        out = []
        for n, item in enumerate(items):
            if not isinstance(item, dict) or "id" not in item or "template" not in item:
                raise DatasetLayoutError(f"{path}, entry {n}: expected id and template")
            template = item["template"].replace("[", "").replace("]", "")
            if template not in label_of:
                raise DatasetLayoutError(
                    f"{path}, entry {n} (video {item['id']}): template {template!r} is "
                    f"not in labels.json"
                )
            vid = str(item["id"])
            video = videos.get(vid, vdir / f"{vid}.webm")
            out.append(VideoEntry(vid, video, label_of[template], vid))
        return out

    return VideoIndex(read("train.json"), read("validation.json"), classes)


def desktop_assembly(root: Path, split: int) -> VideoIndex:
    return desktop_assembly_from(root, split)


def desktop_assembly_from(
    root: Path, split: int, bundles: dict[str, list[str]] | None = None
) -> VideoIndex:
    """The action-segmentation layout under ``root``; ``bundles`` ({"train": [video],
    "test": [video]}) stands in for ``splits/{train,test}.split<k>.bundle``."""
    classes: list[str] = []
    for n, line in _lines(root / "mapping.txt"):
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or parts[0] != str(len(classes)):
            raise DatasetLayoutError(
                f"{root / 'mapping.txt'}, line {n}: expected '{len(classes)} <action>', "
                f"got {line!r}"
            )
        classes.append(parts[1])
    label_of = {c: i for i, c in enumerate(classes)}
    videos = _videos_by_stem(root / "videos")

    def read(bundle) -> list[VideoEntry]:
        out = []
        names = (
            [Path(line).stem for _, line in _lines(bundle)] if isinstance(bundle, Path) else bundle
        )
        for video in names:
            gt = root / "groundTruth" / f"{video}.txt"
            actions = [a for _, a in _lines(gt)]
            path = videos.get(video, root / "videos" / f"{video}.mp4")
            start = 0
            for t in range(1, len(actions) + 1):
                if t < len(actions) and actions[t] == actions[start]:
                    continue
                if actions[start] not in label_of:
                    raise DatasetLayoutError(
                        f"{gt}, frame {start}: action {actions[start]!r} is not in mapping.txt"
                    )
                out.append(
                    VideoEntry(
                        f"{video}@{start}-{t}", path, label_of[actions[start]], video, start, t
                    )
                )
                start = t
        return out

    if bundles is not None:
        return VideoIndex(read(bundles["train"]), read(bundles["test"]), classes)
    sdir = root / "splits"
    if not (sdir / f"train.split{split}.bundle").is_file():
        raise DatasetLayoutError(f"{sdir / f'train.split{split}.bundle'}: file not found")
    train = read(sdir / f"train.split{split}.bundle")
    return VideoIndex(train, read(sdir / f"test.split{split}.bundle"), classes)


INDEX_READERS: dict[str, Callable[[Path, int], VideoIndex]] = {
    "ucf50": ucf50,
    "ucf101": ucf101,
    "ssv2": ssv2,
    "desktop_assembly": desktop_assembly,
}
