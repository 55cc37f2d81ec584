"""Who answers "which cells of the g x g grid hold the action": an LLM through the
OpenAI API, the synthetic data's exact cells (optionally degraded), or frame-difference
motion energy, each an :class:`Annotator` in the registry :data:`ANNOTATORS` (a plugin
adds its own with :func:`register_annotator`). Each returns an :class:`Answer` per frame
and never raises for a bad reply: a failure is an answer with its kind and the raw
reply."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from rsexp.core.registry import Registry
from rsexp.errors import GuidanceJobError, OpenAIKeyMissing  # noqa: F401 (raised here)
from rsexp.guidance.frames import FrameJob, grid_image

PROMPT_VERSION = "rs-grid-v1"
SYSTEM_PROMPT = (
    "You annotate video frames for action recognition. The image is one video frame cut "
    "into a {g}x{g} grid of cells separated by white lines; rows and columns are numbered "
    "from 0 at the top left. Reply with the cells that contain the people, body parts and "
    "objects that carry out the action, as [row, column] pairs. Use as few cells as cover "
    "them; reply with an empty list if the action is not visible."
)
USER_PROMPT = 'The action in this video is "{label}". Which cells hold the key regions?'


def schema(grid: int) -> dict:
    cell = {"type": "integer", "minimum": 0, "maximum": grid - 1}
    pair = {"type": "array", "items": cell, "minItems": 2, "maxItems": 2}
    return {
        "type": "object",
        "properties": {"key_regions": {"type": "array", "items": pair}},
        "required": ["key_regions"],
        "additionalProperties": False,
    }


@dataclass
class Answer:
    """``cells`` ([[row, col], ...]) or ``failure`` (its kind) with the ``raw`` reply."""

    cells: list[list[int]] | None = None
    failure: str | None = None
    raw: str = ""
    tokens: tuple[int, int] = (0, 0)  # input, output
    usd: float = 0.0


class ReplyError(ValueError):
    """A reply that does not answer: its kind is the first word (json, schema, range,
    duplicate, refusal, empty)."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def parse_reply(text: str | None, grid: int) -> list[list[int]]:
    """The cells of a reply ``{"key_regions": [[row, col], ...]}``, checked."""
    if not text:
        raise ReplyError("empty", "no content")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReplyError("json", str(e)) from None
    regions = data.get("key_regions") if isinstance(data, dict) else None
    if not isinstance(regions, list):
        raise ReplyError("schema", "no 'key_regions' list")
    cells = []
    for cell in regions:
        ok = isinstance(cell, list) and len(cell) == 2
        if not ok or not all(isinstance(v, int) and not isinstance(v, bool) for v in cell):
            raise ReplyError("schema", f"{cell!r} is not a [row, col] pair of integers")
        if not all(0 <= v < grid for v in cell):
            raise ReplyError("range", f"{cell} is outside the {grid}x{grid} grid")
        if cell in cells:
            raise ReplyError("duplicate", f"{cell} given twice")
        cells.append(cell)
    return sorted(cells)


class Annotator(ABC):
    """A guidance annotator. Contract (``tests/test_guidance.py`` runs every registered
    one through it):

    - ``name``: its ``guidance.annotator`` name; :meth:`from_config` makes it from the
      run's config and the dataset's exact cells (None but for generated data).
    - :meth:`settings`: what it was asked with, recorded in the guidance file's metadata.
    - :meth:`frames_needed`: the video frames :meth:`ask` reads for a frame (none for an
      annotator that needs no pixels); :meth:`ask` answers one frame, thread-safe when
      ``concurrency`` > 1, and never raises for a bad reply (an :class:`Answer` with its
      ``failure``).
    - Optional: :meth:`connect` (a client, before the first ask; never for a dry run);
      ``priced`` annotators give :meth:`estimate` and :meth:`usd` (the dry run's bill,
      the cost cap ``max_usd``), and ``batch`` ones answer through the Batch API
      (:mod:`rsexp.guidance.batch`).
    """

    name: str = ""
    concurrency: int = 1  # answers in flight at once
    priced: bool = False
    batch: bool = False
    max_usd: float = 0.0  # stop once this much is spent; 0 = no cap

    @classmethod
    @abstractmethod
    def from_config(cls, cfg, cells: dict | None) -> Annotator: ...

    @abstractmethod
    def settings(self) -> dict: ...

    @abstractmethod
    def ask(self, job: FrameJob, frames: np.ndarray | None) -> Answer: ...

    def frames_needed(self, job: FrameJob, length: int) -> list[int]:
        return [job.frame]

    def connect(self) -> None:  # noqa: B027  (optional: nothing to connect)
        """Make what asking needs (a client); not called for a dry run."""

    def estimate(self, job: FrameJob, frames_hw: tuple[int, int]) -> tuple[int, int]:
        """Estimated (input, output) tokens of one request (a priced one's dry run)."""
        return 0, 0

    def usd(self, tokens_in: int, tokens_out: int) -> float:
        return 0.0

    def record(self) -> dict:
        """What the guidance file's metadata keeps of it besides :meth:`settings`."""
        return {}


ANNOTATORS: Registry[type[Annotator]] = Registry("annotator", "guidance.annotator")


def register_annotator(cls: type[Annotator]) -> type[Annotator]:
    """Register an :class:`Annotator` class under its ``name``."""
    ANNOTATORS.add(cls.name, cls)
    return cls


@register_annotator
class Oracle(Annotator):
    """The synthetic generator's exact cells; ``noise`` drops each true cell with
    probability ``drop`` and adds each other cell with probability ``add`` (seeded per
    frame, so a rerun gives the same file)."""

    name = "oracle"

    def __init__(self, cells: dict[str, np.ndarray], grid: int, drop: float, add: float, seed):
        self.cells, self.grid, self.drop, self.add, self.seed = cells, grid, drop, add, seed

    @classmethod
    def from_config(cls, cfg, cells: dict | None) -> Oracle:
        g = cfg.guidance
        if cells is None:
            raise GuidanceJobError(
                f"guidance.annotator=oracle: {cfg.data.name} has no exact cells (only the "
                f"synthetic data does); use openai or motion"
            )
        return cls(cells, g.grid, g.noise.drop, g.noise.add, g.seed)

    def frames_needed(self, job: FrameJob, length: int) -> list[int]:
        return []

    def settings(self) -> dict:
        return {"noise.drop": self.drop, "noise.add": self.add}

    def ask(self, job: FrameJob, frames=None) -> Answer:
        true = self.cells[job.video][job.frame].reshape(-1).astype(bool)
        digest = hashlib.sha1(f"{self.seed}:{job.video}:{job.frame}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        u = rng.random(true.shape)
        keep = np.where(true, u >= self.drop, u < self.add)
        g = self.grid
        return Answer(cells=[[int(i // g), int(i % g)] for i in np.flatnonzero(keep)])


@register_annotator
class Motion(Annotator):
    """Free and offline: the ``top_k`` cells with the most frame-difference energy
    between the frame and the one before it (the one after, for frame 0)."""

    name = "motion"

    def __init__(self, grid: int, top_k: int):
        self.grid, self.top_k = grid, top_k

    @classmethod
    def from_config(cls, cfg, cells: dict | None) -> Motion:
        return cls(cfg.guidance.grid, cfg.guidance.motion_top_k)

    def frames_needed(self, job: FrameJob, length: int) -> list[int]:
        return [job.frame, self.neighbour(job.frame, length)]

    def settings(self) -> dict:
        return {"motion_top_k": self.top_k}

    @staticmethod
    def neighbour(frame: int, length: int) -> int:
        return frame - 1 if frame > 0 else min(1, length - 1)

    def ask(self, job: FrameJob, frames: np.ndarray) -> Answer:
        """``frames``: [2, H, W, 3], the frame and its neighbour."""
        diff = np.abs(frames[0].astype(np.float32) - frames[1].astype(np.float32)).sum(-1)
        g = self.grid
        ys = np.linspace(0, diff.shape[0], g + 1).round().astype(int)
        xs = np.linspace(0, diff.shape[1], g + 1).round().astype(int)
        energy = np.array(
            [diff[ys[r] : ys[r + 1], xs[c] : xs[c + 1]].mean() for r in range(g) for c in range(g)]
        )
        if not energy.any():  # a still frame: no guidance rather than arbitrary cells
            return Answer(cells=[])
        top = np.argsort(-energy, kind="stable")[: self.top_k]
        return Answer(cells=sorted([int(i // g), int(i % g)] for i in top if energy[i] > 0))


# Images on patch-based models (gpt-4.1-mini / -nano, o4-mini): 32 px patches (at most
# 1536) times a per-model factor; other models are estimated at factor 1. An estimate
# for --dry-run only: the bill uses the token counts the API returns.
_PATCH_FACTOR = {"gpt-4.1-mini": 1.62, "gpt-4.1-nano": 2.46, "o4-mini": 1.72}


def image_tokens(width: int, height: int, model: str) -> int:
    patches = min(1536, math.ceil(width / 32) * math.ceil(height / 32))
    return math.ceil(patches * _PATCH_FACTOR.get(model, 1.0))


@register_annotator
class OpenAIAnnotator(Annotator):
    """Asks an OpenAI(-compatible) chat model, one frame per request, with the grid
    image and the action label; the reply is constrained by a JSON schema and checked.
    The client retries 429 / 5xx / timeouts with backoff (honouring ``retry-after``); a
    reply that does not answer is asked once more and then recorded as a failure."""

    name = "openai"
    priced = True

    def __init__(self, cfg):  # the GuidanceConfig
        self.cfg, self.client = cfg, None
        self.concurrency = cfg.openai.concurrency
        self.batch = cfg.openai.batch
        self.max_usd = cfg.openai.max_usd

    @classmethod
    def from_config(cls, cfg, cells: dict | None) -> OpenAIAnnotator:
        return cls(cfg.guidance)

    def record(self) -> dict:
        return {"prompt": {"system": SYSTEM_PROMPT, "user": USER_PROMPT}}

    def connect(self) -> None:
        """Create the client (not needed for --dry-run, which sends nothing)."""
        key = os.environ.get("OPENAI_API_KEY", "")
        if not key:
            raise OpenAIKeyMissing(
                "OPENAI_API_KEY is not set: guidance.annotator=openai reads the key from "
                "the environment only (or use guidance.annotator=motion, free and offline)"
            )
        from openai import OpenAI

        o = self.cfg.openai
        self.client = OpenAI(
            api_key=key,
            base_url=o.base_url or None,
            timeout=o.timeout_s,
            max_retries=o.max_retries,
        )

    def settings(self) -> dict:
        o = self.cfg.openai
        return {
            "model": o.model,
            "base_url": o.base_url or "default",
            "image_detail": o.image_detail,
            "max_side": o.max_side,
            "render": self.cfg.render,
            "prompt_version": PROMPT_VERSION,
        }

    def prompt(self, label: str) -> tuple[str, str]:
        g = self.cfg.grid
        return SYSTEM_PROMPT.format(g=g), USER_PROMPT.format(label=label)

    def request(self, job: FrameJob, frames: np.ndarray) -> dict:
        o, g = self.cfg.openai, self.cfg.grid
        image = grid_image(frames[0], g, o.max_side, self.cfg.render == "labelled")
        system, user = self.prompt(job.label)
        url = "data:image/jpeg;base64," + base64.b64encode(image).decode()
        return {
            "model": o.model,
            "messages": [
                {"role": "system", "content": system},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": user},
                        {"type": "image_url", "image_url": {"url": url, "detail": o.image_detail}},
                    ],
                },
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "key_regions", "strict": True, "schema": schema(g)},
            },
            "temperature": 0,
            "max_completion_tokens": 200,
            "extra_headers": {"X-Rsexp-Frame": f"{job.video}#{job.key}"},
        }

    def ask(self, job: FrameJob, frames: np.ndarray) -> Answer:
        import openai

        req = self.request(job, frames)
        tokens_in = tokens_out = 0
        failure, raw = "", ""
        for _ in range(2):  # a reply that does not answer is asked once more
            try:
                reply = self.client.chat.completions.create(**req)
            except openai.APIStatusError as e:
                return self._failed(f"http_{e.status_code}", str(e), tokens_in, tokens_out)
            except (openai.APITimeoutError, openai.APIConnectionError) as e:
                return self._failed(type(e).__name__, str(e), tokens_in, tokens_out)
            if reply.usage is not None:
                tokens_in += reply.usage.prompt_tokens
                tokens_out += reply.usage.completion_tokens
            message = reply.choices[0].message if reply.choices else None
            raw = (message.content or "") if message else ""
            if message is not None and getattr(message, "refusal", None):
                failure, raw = "refusal", message.refusal
                continue
            try:
                cells = parse_reply(raw, self.cfg.grid)
            except ReplyError as e:
                failure = e.kind
                continue
            usd = self.usd(tokens_in, tokens_out)
            return Answer(cells=cells, raw=raw, tokens=(tokens_in, tokens_out), usd=usd)
        return self._failed(failure, raw, tokens_in, tokens_out)

    def usd(self, tokens_in: int, tokens_out: int) -> float:
        o = self.cfg.openai
        return (tokens_in * o.price_input_per_mtok + tokens_out * o.price_output_per_mtok) / 1e6

    def _failed(self, kind: str, raw: str, tokens_in: int, tokens_out: int) -> Answer:
        return Answer(
            failure=kind,
            raw=raw[:2000],
            tokens=(tokens_in, tokens_out),
            usd=self.usd(tokens_in, tokens_out),
        )

    def estimate(self, job: FrameJob, frames_hw: tuple[int, int]) -> tuple[int, int]:
        """Estimated (input, output) tokens of one request (for --dry-run)."""
        o, g = self.cfg.openai, self.cfg.grid
        h, w = frames_hw
        scale = min(1.0, (o.max_side - 6 * (g - 1)) / max(h, w))
        iw, ih = round(w * scale) + 6 * (g - 1), round(h * scale) + 6 * (g - 1)
        system, user = self.prompt(job.label)
        text = len(system + user + json.dumps(schema(g))) // 4 + 20
        return text + image_tokens(iw, ih, o.model), 12 + 8 * 3
