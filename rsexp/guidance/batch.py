"""``guidance.openai.batch=true``: the OpenAI Batch API (half price, answers within 24 h)
for datasets the size of SSv2.

The requests are written as JSONL files of at most ``MAX_REQUESTS`` requests and
``MAX_BYTES``, uploaded and submitted. What was submitted is recorded in
``<stem>.batches.json`` before and after each submission, so a restart polls and
collects the same batches instead of submitting again (an upload whose batch creation
was cut off is found again by its input file). Answers go to the journal as each batch
is collected; a reply that does not answer is recorded as a failure with its raw reply
(the direct path's one retry would be a second batch).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from rsexp.guidance.annotators import Answer, OpenAIAnnotator, ReplyError, parse_reply
from rsexp.guidance.frames import FrameJob, VideoFrames, frame_jobs
from rsexp.guidance.store import write_atomic

MAX_REQUESTS, MAX_BYTES = 50_000, 190_000_000  # the Batch API's limits, with a margin
DONE = ("completed", "failed", "expired", "cancelled")


def state_path(out: Path) -> Path:
    return out.with_name(out.stem + ".batches.json")


class Batches:
    """The batches of one guidance file: submitted, polled, collected."""

    def __init__(self, annotator: OpenAIAnnotator, out: Path, journal, console):
        self.a, self.out, self.journal, self.console = annotator, out, journal, console
        self.path = state_path(out)
        self.state = json.loads(self.path.read_text()) if self.path.is_file() else {"batches": []}
        self.factor = annotator.cfg.openai.batch_price_factor

    def _save(self) -> None:
        write_atomic(self.path, json.dumps(self.state, indent=1))

    def in_flight(self) -> set[tuple[str, int]]:
        """(video, key) of every request in a batch not collected yet."""
        return {
            (v, k)
            for b in self.state["batches"]
            if not b.get("collected")
            for v, k, _, _ in b["jobs"].values()
        }

    def submit(self, items: list[tuple[FrameJob, dict]]) -> None:
        """Upload ``[(job, request)]`` as one batch (the caller keeps within the limits)."""
        n = len(self.state["batches"])
        lines, jobs = [], {}
        for i, (job, req) in enumerate(items):
            cid = f"r{n}-{i}"
            body = {k: v for k, v in req.items() if k != "extra_headers"}
            lines.append(
                json.dumps(
                    {
                        "custom_id": cid,
                        "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": body,
                    }
                )
            )
            jobs[cid] = [job.video, job.key, job.frame, job.label]
        path = self.out.with_name(f"{self.out.stem}.batch-{n}.jsonl")
        path.write_text("\n".join(lines) + "\n")
        with path.open("rb") as f:
            upload = self.a.client.files.create(file=f, purpose="batch")
        entry = {"id": None, "input_file": upload.id, "jobs": jobs, "collected": False}
        self.state["batches"].append(entry)
        self._save()  # before the batch exists: a restart finds it by its input file
        self._create(entry)
        path.unlink()

    def _create(self, entry: dict) -> None:
        batch = self.a.client.batches.create(
            input_file_id=entry["input_file"],
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"rsexp_guidance": self.out.name},
        )
        entry["id"] = batch.id
        self._save()
        self.console.print(f"submitted batch {batch.id}: {len(entry['jobs'])} requests")

    def resume_creation(self) -> None:
        """Entries uploaded but without a batch id (cut off between the two calls)."""
        for entry in self.state["batches"]:
            if entry["id"] is None:
                found = [
                    b
                    for b in self.a.client.batches.list(limit=100)
                    if b.input_file_id == entry["input_file"]
                ]
                if found:
                    entry["id"] = found[0].id
                    self._save()
                else:
                    self._create(entry)

    def wait_and_collect(self, summary, progress=None) -> None:
        """Poll every uncollected batch until it ends; journal its answers."""
        poll = self.a.cfg.openai.batch_poll_s
        while pending := [b for b in self.state["batches"] if not b.get("collected")]:
            for entry in pending:
                batch = self.a.client.batches.retrieve(entry["id"])
                if batch.status in DONE:
                    self._collect(entry, batch, summary)
                    if progress is not None:
                        progress(len(entry["jobs"]))
            if any(not b.get("collected") for b in self.state["batches"]):
                time.sleep(poll)

    def _collect(self, entry: dict, batch, summary) -> None:
        answers: dict[str, Answer] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            for line in self.a.client.files.content(file_id).text.splitlines():
                if line.strip():
                    rec = json.loads(line)
                    answers[rec["custom_id"]] = self._answer(rec)
        for cid, (video, key, frame, label) in entry["jobs"].items():
            answer = answers.get(cid) or Answer(failure=f"batch_{batch.status}")
            self.journal.add(FrameJob(video, key, frame, label), answer)
            summary.asked += 1
        entry["collected"] = True
        entry["status"] = batch.status
        self._save()

    def _answer(self, rec: dict) -> Answer:
        response, error = rec.get("response") or {}, rec.get("error")
        if error or response.get("status_code", 0) != 200:
            kind = f"http_{response.get('status_code')}" if response else "batch_error"
            return Answer(failure=kind, raw=json.dumps(error or response)[:2000])
        body = response["body"]
        usage = body.get("usage") or {}
        tokens = (usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
        usd = self.a.usd(*tokens) * self.factor
        message = (body.get("choices") or [{}])[0].get("message") or {}
        raw = message.get("content") or ""
        if message.get("refusal"):
            return Answer(failure="refusal", raw=message["refusal"], tokens=tokens, usd=usd)
        try:
            cells = parse_reply(raw, self.a.cfg.grid)
        except ReplyError as e:
            return Answer(failure=e.kind, raw=raw[:2000], tokens=tokens, usd=usd)
        return Answer(cells=cells, raw=raw, tokens=tokens, usd=usd)


def ask_in_batches(cfg, annotator, sources, positions, journal, summary, console) -> None:
    """Submit what is neither answered nor already in a batch (within the cost cap),
    then wait for every batch and journal its answers (see :mod:`rsexp.guidance.batch`)."""
    o = cfg.guidance.openai
    batches = Batches(annotator, summary.path, journal, console)
    batches.resume_creation()
    flying = batches.in_flight()
    spent, per = journal.spent(), [0.0]

    def requests():
        for source in sources:
            reader = VideoFrames(source)
            for job in frame_jobs(source, reader, cfg.guidance.frame_keys, positions):
                if (job.video, job.key) in journal.done or (job.video, job.key) in flying:
                    continue
                frame = reader.read([job.frame])
                if not per[0]:  # estimated dollars per request, at batch prices
                    est = annotator.estimate(job, frame.shape[1:3])
                    per[0] = annotator.usd(*est) * o.batch_price_factor
                yield job, annotator.request(job, frame)

    for chunk in chunks(requests(), o.batch_max_requests):
        if o.max_usd:
            room = int((o.max_usd - spent) // per[0]) if per[0] else len(chunk)
            if room < len(chunk):
                chunk = chunk[: max(0, room)]
                summary.stopped = f"cost cap guidance.openai.max_usd={o.max_usd:g} reached"
        if chunk:
            batches.submit(chunk)
            spent += per[0] * len(chunk)
        if summary.stopped:
            break
    total = sum(len(b["jobs"]) for b in batches.state["batches"] if not b.get("collected"))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console) as bar:  # fmt: skip
        task = bar.add_task("guidance batches: waiting", total=total)
        batches.wait_and_collect(summary, lambda n: bar.advance(task, n))


def chunks(items, max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES):
    """Split ``[(job, request)]`` into lists within the Batch API's limits."""
    chunk, size = [], 0
    for job, req in items:
        n = len(json.dumps(req)) + 200
        if chunk and (len(chunk) >= max_requests or size + n > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append((job, req))
        size += n
    if chunk:
        yield chunk
