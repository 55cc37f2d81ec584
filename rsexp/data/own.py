"""Your own videos, in the two layouts that cover most of them, and per-frame labels.

- ``folder`` (torchvision's, pytorchvideo's, Hugging Face's ``videofolder``, UCF's own):
  ``data.path/<class>/<video>``, or ``data.path/{train,val,test}/<class>/<video>`` when
  split folders exist. Without them the test side is a seeded, class-stratified
  ``data.test_fraction`` of the videos; ``val/*`` is carved from the training side as
  for every dataset.
- ``list`` (MMAction2's ``VideoDataset``, pytorchvideo's labeled paths, the UCF lists):
  ``data.train_list`` / ``data.test_list`` (and ``data.val_list``) of
  ``relative/path label`` lines, the label an integer or a class name, or a CSV with a
  header ``path,label[,split]``.
- ``segments`` (Desktop Assembly's layout for any videos labelled per frame):
  ``data.path/videos/<video>``, ``groundTruth/<video>.txt`` (one label per frame),
  ``mapping.txt`` (``<id> <name>`` lines), and either ``splits/{train,test}.split<k>.
  bundle`` or a seeded ``data.test_fraction`` of the videos.

``data.group_by`` (a regex on the relative path) keeps groups (a subject, a scene, a
source video) on one side of every split; ``data.classes`` (a file of names) fixes the
class order. A video's id and guidance key is its path relative to ``data.path``
without its suffix (``up/v03``). Errors name the file and the line, collected over the
whole file.
"""

from __future__ import annotations

import csv
import random
import re
from collections import defaultdict
from pathlib import Path

from rsexp.config import ConfigError
from rsexp.data.real import VideoIndex, desktop_assembly_from
from rsexp.data.video import VIDEO_EXTENSIONS, VideoEntry
from rsexp.errors import DatasetLayoutError, DatasetNotFoundError

SPLITS = ("train", "val", "test")
MAX_PROBLEMS = 20  # listed in one error; the count says how many more


def root_of(data_cfg) -> Path:
    """``data.path``, which these datasets need."""
    if not data_cfg.path:
        raise ConfigError(
            f"data.path: data.name={data_cfg.name} reads your own videos from a folder; set "
            f"data.path=<the folder that holds them>"
        )
    root = Path(data_cfg.path)
    if not root.is_dir():
        raise DatasetNotFoundError(f"data.path: {root} is not a folder")
    return root


def key_of(root: Path, path: Path) -> str:
    """A video's id and guidance key: its path relative to ``root``, without suffix."""
    return path.relative_to(root).with_suffix("").as_posix()


def _videos(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
    )


def _class_file(data_cfg) -> list[str] | None:
    if not data_cfg.classes:
        return None
    path = Path(data_cfg.classes)
    if not path.is_file():
        raise DatasetLayoutError(f"data.classes: {path}: file not found")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DatasetLayoutError(f"{path}: class names listed twice: {dupes}")
    return names


def group_of(data_cfg, root: Path):
    """The group function of ``data.group_by`` (None: every video its own group)."""
    if not data_cfg.group_by:
        return None
    pattern = re.compile(data_cfg.group_by)

    def group(entry: VideoEntry) -> str:
        m = pattern.search(entry.key)
        if m is None:
            raise DatasetLayoutError(
                f"data.group_by={data_cfg.group_by!r} finds no group in {entry.key!r} "
                f"(relative to {root})"
            )
        return m.group(1) if m.groups() else m.group(0)

    return group


def stratified_test(entries: list[VideoEntry], fraction: float, seed: int, group) -> tuple:
    """``(train, test)``: about ``fraction`` of each class's videos on the test side,
    chosen with ``seed``, whole groups together, at least one group of every class kept
    for training."""
    group = group or (lambda e: e.key)
    by_class: dict[int, list[str]] = defaultdict(list)
    for e in entries:
        g = group(e)
        if g not in by_class[e.label]:
            by_class[e.label].append(g)
    rng, held = random.Random(seed), set()
    for label in sorted(by_class):
        groups = sorted(by_class[label])
        rng.shuffle(groups)
        if len(groups) < 2:
            continue  # one group: it trains (a class needs training videos)
        target = min(len(groups) - 1, max(1, round(fraction * len(groups))))
        have = sum(g in held for g in groups)
        for g in groups:
            if have >= target:
                break
            if g not in held:
                held.add(g)
                have += 1
    train = [e for e in entries if group(e) not in held]
    left = sorted({e.label for e in entries} - {e.label for e in train})
    if left:
        raise DatasetLayoutError(
            f"the test side took every video of class(es) {left}: their groups "
            f"(data.group_by) are shared with other classes; add videos or loosen the groups"
        )
    return train, [e for e in entries if group(e) in held]


def folder(data_cfg) -> tuple[Path, VideoIndex, list[VideoEntry] | None]:
    """``data.path/<class>/<video>`` or ``data.path/{train,val,test}/<class>/<video>``:
    (root, the index, the given validation side or None)."""
    root = root_of(data_cfg)
    split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir()}
    if split_dirs and "train" not in split_dirs:
        raise DatasetLayoutError(
            f"{root}: has {', '.join(sorted(split_dirs))}/ but no train/ folder; use "
            f"<class>/<video> or train/<class>/<video> (with val/ and test/)"
        )
    tops = [split_dirs["train"]] if split_dirs else [root]
    found = sorted({d.name for top in tops for d in top.iterdir() if d.is_dir()} - {".rsexp"})
    classes = _class_file(data_cfg) or found
    if not classes:
        raise DatasetLayoutError(f"{tops[0]}: no class folders (expected <class>/<video>)")
    label_of = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(found) - set(label_of))
    if unknown:
        raise DatasetLayoutError(
            f"{tops[0]}: class folders {unknown} are not in data.classes ({data_cfg.classes})"
        )

    def read(top: Path) -> list[VideoEntry]:
        out = []
        for cls in sorted(label_of):
            for path in _videos(top / cls) if (top / cls).is_dir() else []:
                key = key_of(root, path)
                out.append(VideoEntry(key, path, label_of[cls], key))
        return out

    if split_dirs:
        train = read(split_dirs["train"])
        test = read(split_dirs["test"]) if "test" in split_dirs else []
        val = read(split_dirs["val"]) if "val" in split_dirs else None
        if not test:
            train, test = stratified_test(train, data_cfg.test_fraction, data_cfg.val_seed,
                                          group_of(data_cfg, root))  # fmt: skip
    else:
        every = read(root)
        if not every:
            raise DatasetLayoutError(
                f"{root}: no videos under its class folders ({', '.join(VIDEO_EXTENSIONS)})"
            )
        train, test = stratified_test(every, data_cfg.test_fraction, data_cfg.val_seed,
                                      group_of(data_cfg, root))  # fmt: skip
        val = None
    return root, VideoIndex(train, test, classes), val


def _read_list(path: Path, role: str) -> tuple:
    """One list file: ``{split: [(relative path, label as given, line)]}`` and the
    problems found (each naming the file and line)."""
    if not path.is_file():
        raise DatasetLayoutError(f"data.{role}_list: {path}: file not found")
    rows, problems = defaultdict(list), []
    text = path.read_text()
    first = text.splitlines()[0].strip().lower() if text.strip() else ""
    if path.suffix.lower() == ".csv" or first.startswith("path,label"):
        reader = csv.DictReader(text.splitlines())
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if fields[:2] != ["path", "label"]:
            raise DatasetLayoutError(f"{path}, line 1: expected a header path,label[,split]")
        for n, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            split = row.get("split") or role
            if split not in SPLITS:
                problems.append(f"{path}, line {n}: split {split!r} is not train, val or test")
                continue
            if not row.get("path") or not row.get("label"):
                problems.append(f"{path}, line {n}: expected path,label, got {row}")
                continue
            rows[split].append((row["path"], row["label"], n))
        return rows, problems
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            problems.append(f"{path}, line {n}: expected 'relative/path label', got {line!r}")
            continue
        rows[role].append((parts[0], parts[1], n))
    return rows, problems


def listed(data_cfg) -> tuple[Path, VideoIndex, list[VideoEntry] | None]:
    """``data.train_list`` / ``test_list`` / ``val_list``: (root, index, given val)."""
    root = root_of(data_cfg)
    if not data_cfg.train_list:
        raise ConfigError("data.train_list: data.name=list needs the training list file")
    names = _class_file(data_cfg)
    rows, problems = defaultdict(list), []
    files = {"train": data_cfg.train_list, "val": data_cfg.val_list, "test": data_cfg.test_list}
    for role, given in files.items():
        if not given:
            continue
        got, found = _read_list(Path(given), role)
        problems += found
        for split, items in got.items():
            rows[split] += [(p, lab, n, Path(given)) for p, lab, n in items]
    labels = {lab for items in rows.values() for _, lab, _, _ in items}
    numeric = all(lab.lstrip("-").isdigit() for lab in labels)
    if names is None:
        names = ([str(i) for i in range(max(int(x) for x in labels) + 1)] if numeric
                 else sorted(labels))  # fmt: skip
    label_of = {c: i for i, c in enumerate(names)}
    out: dict[str, list[VideoEntry]] = {}
    for split, items in rows.items():
        entries = []
        for rel, lab, n, file in items:
            if numeric:
                label = int(lab) if 0 <= int(lab) < len(names) else None
            else:
                label = label_of.get(lab)
            if label is None:
                problems.append(f"{file}, line {n}: label {lab!r} is not one of the "
                                f"{len(names)} classes")  # fmt: skip
                continue
            video = root / rel
            if not video.is_file():
                problems.append(f"{file}, line {n}: {video} not found")
                continue
            key = key_of(root, video)
            entries.append(VideoEntry(key, video, label, key))
        out[split] = entries
    if problems:
        extra = len(problems) - MAX_PROBLEMS
        more = f"\n  ... and {extra} more" if extra > 0 else ""
        raise DatasetLayoutError(
            f"{len(problems)} problems in the list files:\n  "
            + "\n  ".join(problems[:MAX_PROBLEMS])
            + more
        )
    train, test = out.get("train", []), out.get("test", [])
    if not test:
        train, test = stratified_test(train, data_cfg.test_fraction, data_cfg.val_seed,
                                      group_of(data_cfg, root))  # fmt: skip
    return root, VideoIndex(train, test, names), out.get("val")


def segments(data_cfg) -> tuple[Path, VideoIndex, list[VideoEntry] | None]:
    """Videos labelled per frame in Desktop Assembly's layout under ``data.path``; the
    split bundles when there are any, else a seeded ``data.test_fraction`` of videos."""
    root = root_of(data_cfg)
    if (root / "splits").is_dir():
        return root, desktop_assembly_from(root, data_cfg.split), None
    bundles = {}
    videos = sorted(p.stem for p in (root / "groundTruth").glob("*.txt"))
    if not videos:
        raise DatasetLayoutError(f"{root / 'groundTruth'}: no per-frame label files")
    test = set(random.Random(data_cfg.val_seed).sample(
        videos, max(1, round(data_cfg.test_fraction * len(videos)))))  # fmt: skip
    if len(test) == len(videos):
        raise DatasetLayoutError(f"{root}: one video is too few to train and test on")
    bundles["train"] = [v for v in videos if v not in test]
    bundles["test"] = sorted(test)
    return root, desktop_assembly_from(root, data_cfg.split, bundles), None
