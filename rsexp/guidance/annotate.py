"""``rsexp guidance``: annotate the training videos that training will cover, resumably.

The videos are the dataset's training videos picked by the same seeded coverage
selection as training (:func:`~rsexp.guidance.store.select_covered`, over the training
side with and without the validation split carved out, so sweep trials and confirmation
runs both find theirs); validation and test videos are never sent. Every answer is
appended to ``<stem>.journal.jsonl`` as it arrives: a Ctrl-C or a kill loses at most the
requests in flight, and a rerun asks only for the frames the journal lacks (a frame is
never asked twice; failures are kept with their raw reply). The released-format file
and its metadata record are (re)written from the journal at the end of every run.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from rsexp.config import Config
from rsexp.errors import GuidanceJobError  # noqa: F401 (raised here)
from rsexp.guidance.annotators import ANNOTATORS, Annotator, Answer
from rsexp.guidance.frames import FrameJob, VideoFrames, VideoSource, frame_jobs
from rsexp.guidance.store import GuidanceStore, meta_path, select_covered


def journal_path(out: Path) -> Path:
    return out.with_name(out.stem + ".journal.jsonl")


@dataclass
class Journal:
    """The answers so far, one JSON line each, after a header line naming the settings
    that made them (a rerun with other settings is refused, not mixed in)."""

    path: Path
    header: dict
    done: dict = field(default_factory=dict)  # (video, key) -> record

    def open(self, create: bool = True) -> Journal:
        if self.path.is_file():
            lines = self.path.read_text().splitlines()
            for n, line in enumerate(lines, start=1):
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    if n == len(lines):  # torn by a kill mid-write: that answer is asked again
                        continue
                    raise GuidanceJobError(f"{self.path}, line {n}: not JSON") from None
                if "header" in rec:
                    if rec["header"] != self.header:
                        raise GuidanceJobError(
                            f"{self.path} was made with other settings ({rec['header']}); "
                            f"these are {self.header}. Choose another guidance.path, or "
                            f"delete the journal to start over"
                        )
                    continue
                self.done[(rec["video"], rec["key"])] = rec
            if lines and not lines[-1].endswith("}"):
                with self.path.open("a") as f:
                    f.write("\n")
        elif create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write({"header": self.header})
        return self

    def add(self, job: FrameJob, answer: Answer) -> dict:
        rec = {"video": job.video, "key": job.key, "frame": job.frame}
        if answer.failure:
            rec.update(failure=answer.failure, raw=answer.raw)
        else:
            rec["cells"] = answer.cells
        rec.update(tokens=list(answer.tokens), usd=answer.usd)
        self._write(rec)
        self.done[(job.video, job.key)] = rec
        return rec

    def _write(self, rec: dict) -> None:
        # one O_APPEND write per line: never interleaved, at most the last line torn
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, (json.dumps(rec) + "\n").encode())
        finally:
            os.close(fd)

    def spent(self) -> float:
        return sum(r.get("usd", 0.0) for r in self.done.values())


def training_sources(cfg: Config) -> tuple[list[VideoSource], Path, dict | None, int | None]:
    """The covered training videos, where the file goes, the exact cells (synthetic),
    and the positions per video when the dataset fixes them (synthetic: every frame)."""
    g = cfg.guidance
    if cfg.data.name == "synthetic":
        from rsexp.data.synthetic import CLASS_NAMES, load_or_generate

        if not g.path:
            raise GuidanceJobError(
                "guidance.path: set a file to write; the synthetic data's own guidance file "
                "is its exact guidance, written by training"
            )
        gen, _ = load_or_generate(
            cfg.data.synthetic, cfg.data.num_frames, cfg.data.frame_size, g.grid, cfg.data.root
        )
        tr = gen["train"]
        covered = select_covered(tr.video_ids, g.coverage, g.seed)
        keep = [i for i, v in enumerate(tr.video_ids) if v in covered]
        sources = [
            VideoSource(
                tr.video_ids[i], None, ((0, None, CLASS_NAMES[tr.labels[i]]),), tr.videos[i]
            )
            for i in keep
        ]
        cells = {tr.video_ids[i]: tr.cells[i] for i in keep}
        return sources, Path(g.path), cells, cfg.data.num_frames
    from rsexp.data.builders import read_split
    from rsexp.data.registry import check_available

    check_available(cfg.data)
    root, index, carved, _ = read_split(cfg.data.name, cfg.data)
    keys = select_covered([e.key for e in carved], g.coverage, g.seed)
    keys |= select_covered([e.key for e in index.train], g.coverage, g.seed)
    by_key: dict[str, list] = {}
    for e in index.train:
        if e.key in keys:
            by_key.setdefault(e.key, []).append(e)
    sources = [
        VideoSource(
            k,
            es[0].path,
            tuple((e.start, e.end, index.class_names[e.label]) for e in es),
        )
        for k, es in sorted(by_key.items())
    ]
    return sources, Path(g.path) if g.path else root / "guidance.json", None, None


def make_annotator(cfg: Config, cells: dict | None) -> Annotator:
    """The registered annotator ``guidance.annotator`` names, made from ``cfg``."""
    return ANNOTATORS.get(cfg.guidance.annotator).from_config(cfg, cells)


@dataclass
class Summary:
    path: Path
    videos: int
    asked: int = 0
    answered: int = 0
    failures: Counter = field(default_factory=Counter)
    tokens: list = field(default_factory=lambda: [0, 0])
    usd: float = 0.0
    stopped: str = ""


def annotate(cfg: Config, *, dry_run: bool = False, console: Console | None = None) -> Summary:
    """Annotate the covered training videos (see the module doc); ``dry_run`` counts
    the requests and estimates tokens and dollars without sending anything."""
    console = console or Console()
    g = cfg.guidance
    sources, out, cells, positions = training_sources(cfg)
    positions = positions or g.frames_per_video
    annotator = make_annotator(cfg, cells)
    header = {
        "annotator": annotator.name,
        "settings": annotator.settings(),
        "frame_keys": g.frame_keys,
        "frames_per_video": positions,
        "grid": g.grid,
    }
    jpath = journal_path(out)
    if out.is_file() and not jpath.is_file():
        raise GuidanceJobError(
            f"{out} exists and was not made by rsexp guidance (no {jpath.name} beside it); "
            f"it is used as it is. To make a new one set guidance.path=<another file>"
        )
    journal = Journal(jpath, header).open(create=not dry_run)
    if dry_run:
        return _dry_run(cfg, annotator, sources, positions, journal, out, console)
    annotator.connect()
    summary = Summary(out, len(sources))
    try:
        _ask_all(cfg, annotator, sources, positions, journal, summary, console)
    finally:  # interrupted or not, the file holds every answer so far
        _write(journal, header, out, annotator, g.grid, positions)
        _tally(journal, summary)
        _report(summary, console)
    return summary


def _ask_all(cfg, annotator, sources, positions, journal, summary, console) -> None:
    g = cfg.guidance
    if annotator.batch:
        from rsexp.guidance.batch import ask_in_batches

        return ask_in_batches(cfg, annotator, sources, positions, journal, summary, console)
    cap = annotator.max_usd
    spent = journal.spent()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    cost_shown = annotator.priced
    workers = annotator.concurrency
    with Progress(*columns, console=console) as bar, ThreadPoolExecutor(workers) as pool:
        task = bar.add_task(f"guidance ({annotator.name})", total=len(sources))
        pending: dict = {}

        def collect(block: bool) -> None:
            nonlocal spent
            if not pending:
                return
            done, _ = wait(pending, timeout=None if block else 0, return_when=FIRST_COMPLETED)
            for fut in done:
                job = pending.pop(fut)
                rec = journal.add(job, fut.result())
                spent += rec["usd"]
                summary.asked += 1
                if cost_shown:
                    bar.update(task, description=f"guidance ({annotator.name}) ${spent:.4f}")

        try:
            for source in sources:
                reader = VideoFrames(source)
                jobs = [
                    j
                    for j in frame_jobs(source, reader, g.frame_keys, positions)
                    if (j.video, j.key) not in journal.done
                ]
                for job in jobs:
                    per = spent / max(1, len(journal.done))
                    if cap and spent + per * (len(pending) + 1) >= cap:
                        summary.stopped = f"cost cap guidance.openai.max_usd={cap:g} reached"
                        break
                    near = annotator.frames_needed(job, reader.length)
                    frames = reader.read(near) if near else None
                    pending[pool.submit(annotator.ask, job, frames)] = job
                    while len(pending) >= 2 * workers:
                        collect(block=True)
                    collect(block=False)
                if summary.stopped:
                    break
                bar.advance(task)
            while pending:
                collect(block=True)
        except KeyboardInterrupt:
            for fut in pending:
                fut.cancel()
            summary.stopped = "interrupted (Ctrl-C); run the same command again to continue"
            raise


def _write(journal: Journal, header: dict, out: Path, annotator, grid: int, positions: int):
    regions: dict = {}
    frames: dict = {}
    for (video, key), rec in sorted(journal.done.items()):
        frames.setdefault(video, {})[str(key)] = rec["frame"]
        if "cells" in rec:
            regions.setdefault(video, {})[key] = tuple(tuple(c) for c in rec["cells"])
    store = GuidanceStore(grid=grid, regions=regions, frame_keys=header["frame_keys"])
    store.positions = positions
    tokens = [sum(r["tokens"][i] for r in journal.done.values()) for i in (0, 1)]
    meta = {
        **header,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "videos": len(frames),
        "answered": sum("cells" in r for r in journal.done.values()),
        "failures": dict(Counter(r["failure"] for r in journal.done.values() if "failure" in r)),
        "tokens": {"input": tokens[0], "output": tokens[1]},
        "usd": round(journal.spent(), 6),
        "journal": journal.path.name,
        "frames": frames,  # the video frame behind each key
    }
    meta.update(annotator.record())
    store.save(out, meta)


def _tally(journal: Journal, summary: Summary) -> None:
    recs = journal.done.values()
    summary.answered = sum("cells" in r for r in recs)
    summary.failures = Counter(r["failure"] for r in recs if "failure" in r)
    summary.tokens = [sum(r["tokens"][i] for r in recs) for i in (0, 1)]
    summary.usd = journal.spent()


def _report(s: Summary, console: Console) -> None:
    failures = ", ".join(f"{k} {v}" for k, v in sorted(s.failures.items())) or "none"
    if s.stopped:
        console.print(f"[yellow]stopped[/]: {s.stopped}")
    console.print(
        f"[green]guidance[/]: {s.videos} videos, {s.answered} frames answered "
        f"({s.asked} asked this run), failures: {failures}; tokens {s.tokens[0]:,} in / "
        f"{s.tokens[1]:,} out, ${s.usd:.4f}. Wrote {s.path} and {meta_path(s.path).name}"
    )


def _dry_run(cfg, annotator, sources, positions, journal, out, console) -> Summary:
    g = cfg.guidance
    summary = Summary(out, len(sources))
    t0 = time.perf_counter()
    tokens = [0, 0]
    for source in sources:
        reader = VideoFrames(source)
        hw = reader.read([0])[0].shape[:2] if annotator.priced else (0, 0)
        for job in frame_jobs(source, reader, g.frame_keys, positions):
            if (job.video, job.key) in journal.done:
                continue
            summary.asked += 1
            if annotator.priced:
                t_in, t_out = annotator.estimate(job, hw)
                tokens[0] += t_in
                tokens[1] += t_out
    summary.tokens = tokens
    if annotator.priced:
        summary.usd = annotator.usd(*tokens)
        if g.openai.batch:  # the Batch API's discount
            summary.usd *= g.openai.batch_price_factor
    table = Table(title=f"rsexp guidance --dry-run ({annotator.name}): nothing sent")
    for col in ("videos", "requests", "est. input tokens", "est. output tokens", "est. USD"):
        table.add_column(col, justify="right")
    table.add_row(
        str(summary.videos),
        f"{summary.asked:,}",
        f"{tokens[0]:,}",
        f"{tokens[1]:,}",
        f"{summary.usd:.2f}",
    )
    console.print(table)
    model = f" {g.openai.model}" if annotator.priced else ""
    console.print(
        f"prices{model}: ${g.openai.price_input_per_mtok}/M input, "
        f"${g.openai.price_output_per_mtok}/M output tokens (guidance.openai.price_*)"
        f"{f', x{g.openai.batch_price_factor:g} with the Batch API' if g.openai.batch else ''}; "
        f"{len(journal.done)} frames already in {journal.path.name}; "
        f"counted in {time.perf_counter() - t0:.1f} s"
    )
    return summary
