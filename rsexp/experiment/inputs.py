"""A run's inputs: the dataset's splits with their guidance attached (and ``prepare``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape

from rsexp.config import Config, ConfigError
from rsexp.data import build_raw, dataset_spec
from rsexp.data.dataset import ClipDataset
from rsexp.data.transforms import SpatialAugment
from rsexp.experiment.reporter import describe_splits, progress_bar
from rsexp.guidance.store import (
    GuidanceFormatError,
    GuidanceStore,
    meta_path,
    select_covered,
)


@dataclass
class Data:
    """The splits of a run: ``train``; ``val`` (held out of the training data, for
    everything that chooses; None without one); ``test`` (the official evaluation side,
    reported at the end, never used to choose; None if the dataset has none)."""

    train: ClipDataset
    val: ClipDataset | None
    class_names: list[str]
    guidance: GuidanceStore
    guidance_path: Path
    guided_frame_fraction: float
    digest: str
    skipped_videos: int = 0
    cache_dirs: list[Path] = field(default_factory=list)
    test: ClipDataset | None = None

    @property
    def eval_sets(self) -> dict[str, ClipDataset]:
        return {k: v for k, v in (("val", self.val), ("test", self.test)) if v is not None}

    def split_ids(self) -> dict[str, list[str]]:
        """The clip ids of each split (recorded in the run: ``splits.json``)."""
        return {k: list(v.video_ids) for k, v in (("train", self.train), *self.eval_sets.items())}


def load_guidance(cfg: Config, default_path: Path, exact=None) -> tuple[GuidanceStore, Path]:
    """The guidance store for a run: ``guidance.path`` or the dataset's own file (for
    generated data written first from ``exact``). Without a file only a run with
    ``lambda_s = 0`` may go on."""
    g = cfg.guidance
    path = Path(g.path) if g.path else default_path
    if not g.path and exact is not None:
        from filelock import FileLock

        path.parent.mkdir(parents=True, exist_ok=True)
        # one writer at a time: runs started together on the same data root (sweep
        # workers, confirmation and paper jobs) must not read a half-written pair
        with FileLock(path.parent / ".guidance.lock"):
            if not meta_path(path).is_file():
                # (re)written with its metadata record: a file from before frame-key
                # conventions were recorded had none, and its keys were frame numbers
                store = GuidanceStore.from_masks(*exact, grid=g.grid)
                store.save(path, {"annotator": "exact"})
    if path.is_file():
        return GuidanceStore.load(path, g.grid, g.frame_keys, g.frames_per_video), path
    if cfg.loss.lambda_s == 0:
        return GuidanceStore(grid=g.grid, source=f"none ({path} absent; lambda_s = 0)"), path
    raise FileNotFoundError(
        f"guidance file not found: {path}. The spatial loss (loss.lambda_s="
        f"{cfg.loss.lambda_s}) needs the {cfg.data.name} guidance in the authors' "
        f"released JSON format there (or set guidance.path=<file>); train the "
        f"baseline with loss.lambda_s=0 loss.lambda_t=0."
    )


def build_data(cfg: Config, console: Console | None = None) -> Data:
    """Datasets with guidance attached: ``coverage`` picks the training videos whose
    guidance the spatial loss may use; validation clips keep all theirs (for
    ``val/loss_spatial``). Real videos are decoded into the clip cache first, with a
    progress bar on ``console``."""
    g = cfg.guidance
    with progress_bar(console or Console()) as bar:

        def progress(description: str, total: int):
            task = bar.add_task(description, total=total)
            return lambda: bar.advance(task)

        raw = build_raw(cfg.data.name, cfg.data, g.grid, progress)
    store, path = load_guidance(cfg, raw.guidance_path, raw.exact_guidance)

    def lookup(key: str, frames: np.ndarray, length: int, fps: float) -> np.ndarray:
        return store.clip_mask(key, frames, g.max_frame_gap, length, fps)[0]

    tr = raw.train
    covered = select_covered(tr.keys, g.coverage, g.seed)
    augment = None
    if cfg.data.augment:
        augment = SpatialAugment(cfg.data.frame_size, g.grid, hflip=cfg.data.hflip)
    train = ClipDataset(
        tr.ids,
        tr.videos,
        tr.labels,
        tr.guidance_masks(lookup, g.grid, keep=covered),
        choices=tr.choices,
        augment=augment,
        seed=cfg.train.seed,
        train=True,
        windows=tr.windows,
    )
    evals = {
        name: ClipDataset(
            sp.ids, sp.videos, sp.labels, sp.guidance_masks(lookup, g.grid), windows=sp.windows
        )
        for name, sp in (("val", raw.val), ("test", raw.test))
        if sp is not None
    }
    if cfg.loss.lambda_s > 0 and g.coverage > 0:
        check_guided(train, [k in covered for k in tr.keys], tr.keys, store, path)
    return Data(
        train=train,
        val=evals.get("val"),
        test=evals.get("test"),
        class_names=raw.class_names,
        guidance=store,
        guidance_path=path,
        guided_frame_fraction=float(train.masks.any(-1).float().mean()),
        digest=raw.digest,
        skipped_videos=len(raw.skipped),
        cache_dirs=raw.cache_dirs,
    )


class GuidanceMismatchError(GuidanceFormatError):
    """An RS run whose guidance file guides none of its training frames."""


def check_guided(train: ClipDataset, covered: list[bool], keys, store, path: Path) -> None:
    """Stop an RS run that would train with no guided frame (ids that do not match the
    dataset's, an empty file); warn when the covered videos are mostly unguided (a wrong
    frame-key convention or a gap too small): a wrong convention must be loud."""
    cov = torch.tensor(covered, dtype=torch.bool)
    frames = train.masks[cov].any(-1)  # [covered clips, K]
    if frames.numel() == 0 or not bool(frames.any()):
        theirs = ", ".join(sorted(store.regions)[:3]) or "none: the file is empty"
        ours = ", ".join(sorted(set(keys))[:3])
        raise GuidanceMismatchError(
            f"{path}: the guidance matches none of the {int(cov.sum())} covered training "
            f"videos, so the spatial loss would never apply. The dataset's video ids look "
            f"like {ours}; the file's look like {theirs}. Point guidance.path at the "
            f"right file, or train the baseline with loss.lambda_s=0."
        )
    in_file = torch.tensor([k in store for k in keys], dtype=torch.bool)[cov]
    share = float(frames[in_file].float().mean())
    if share < 0.5:  # the file has these videos, yet most of their frames find nothing
        warnings.warn(
            f"{path}: the file covers {int(in_file.sum())} training videos but guides only "
            f"{share:.0%} of their sampled frames; check guidance.frame_keys (now "
            f"{store.frame_keys!r}; the released format is 'position') and "
            f"guidance.max_frame_gap",
            stacklevel=2,
        )


def _size(folder: Path) -> str:
    n = sum(f.stat().st_size for f in folder.iterdir())
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def prepare(cfg: Config, console: Console | None = None) -> Data:
    """Read the dataset's index, decode what the clip cache lacks, load the guidance, and
    print what is ready where (``rsexp prepare``; the sweep driver does it first)."""
    console = console or Console()
    data = build_data(cfg, console)
    skipped = f", {data.skipped_videos} bad videos left out" if data.skipped_videos else ""
    split = f" (split {cfg.data.split})" if dataset_spec(cfg.data.name).files else ""
    console.print(
        f"data [bold]{cfg.data.name}[/]{split}: {describe_splits(data)}, "
        f"{len(data.class_names)} classes{skipped} | guidance "
        f"{escape(data.guidance.source)}: {data.guided_frame_fraction:.0%} of training "
        f"frames guided (coverage {cfg.guidance.coverage:g}) | cache: "
        + ", ".join(f"{escape(str(d))} ({_size(d)})" for d in data.cache_dirs)
    )
    return data


def background_ids(names, class_names: list[str]) -> tuple[int, ...]:
    """The class ids of ``data.background`` (names), checked against the dataset's."""
    unknown = [n for n in names if n not in class_names]
    if unknown:
        raise ConfigError(
            f"data.background: {unknown} are not classes of this dataset; its classes "
            f"start {class_names[:5]}"
        )
    return tuple(class_names.index(n) for n in names)
