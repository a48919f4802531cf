"""Continuous batching: the requests to one model decoded together, one step over every active row.

A request (`Job`) waits until a slot of the model's KV cache is free; its prompt is then prefilled
alone into that slot, and from the next step on its row takes part in every step
(batched.BatchedDecode). Requests join between steps and leave when they finish, so
a new one never waits for the others to end. Each row draws its tokens with its own generator, seeded
by its request, exactly as Engine.samples does for minigpt-sample: a seeded request gets the same text
whatever else is being decoded beside it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import torch

from .batched import BatchedDecode
from .decode import half_window
from .engine import Engine, SamplingParams, pick

# what a job is told, on the decoding thread, as it goes: ("text", choice, text), ("end", choice,
# finish_reason, tokens), then after the last choice ("done",); or ("error", message) and nothing more
Event = tuple


@dataclass
class Job:
    ids: list[int]  # <eot> and the prompt's tokens (Engine.encode_prompt)
    max_new_tokens: int
    params: SamplingParams
    seed: int
    emit: Callable[[Event], None]  # called on the decoding thread
    n: int = 1  # samples, one after another, one generator (as minigpt-sample --num-samples)
    stop_at_eot: bool = False
    stop: tuple[str, ...] = ()  # strings that end a sample where they first appear (not included)
    cancelled: bool = False  # set by the caller (a client gone); the row leaves at the next step


class StopText:
    """A sample's text as it comes, held back while its end may be the start of a stop string: feed()
    returns what is safe to send and whether a stop string was met (the text is cut where it begins)."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops = tuple(s for s in stops if s)
        self.held = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        if not self.stops:
            return piece, False
        out = []
        for ch in piece:  # a character at a time: the first stop string completed ends the text
            text = self.held + ch
            cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
            if cut >= 0:
                self.held = ""
                return "".join(out) + text[:cut], True
            keep = max(
                (k for s in self.stops for k in range(1, min(len(s), len(text) + 1)) if text.endswith(s[:k])), default=0
            )
            out.append(text[: len(text) - keep])
            self.held = text[len(text) - keep :]
        return "".join(out), False

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


@dataclass
class Row:
    job: Job
    slot: int
    generator: torch.Generator
    choice: int = 0
    context: list[int] = field(default_factory=list)
    new: int = 0  # tokens drawn in this sample
    logits: torch.Tensor | None = None  # (1, vocab): what the next token is drawn from
    stops: StopText | None = None


class Scheduler:
    """The slots of one model, its waiting jobs and its rows; run_once() admits what fits and decodes
    one step (worker.py calls it in a loop, in a process of its own)."""

    def __init__(self, engine: Engine, slots: int = 64):
        self.engine = engine
        self.decode = BatchedDecode(engine.model, engine.device, slots)
        self.free = list(range(slots - 1, -1, -1))
        self.waiting: deque[Job] = deque()
        self.rows: list[Row] = []

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.rows

    def add(self, job: Job) -> None:
        self.waiting.append(job)

    def run_once(self) -> None:
        """The waiting jobs that fit are admitted (their prompts prefilled), then every row draws a token
        and the rows that go on take one step. A failure ends the jobs it touched, with an error event."""
        try:
            while self.waiting and self.free:
                job = self.waiting.popleft()
                if not job.cancelled:
                    row = Row(job, self.free.pop(), torch.Generator(device=self.engine.device).manual_seed(job.seed))
                    self.rows.append(row)
                    self._begin(row)
            self._advance()
        except Exception as e:
            message = f"decoding failed ({type(e).__name__}: {e})"
            for row in list(self.rows):
                self._tell(row.job, ("error", message))
                self._leave(row)

    def _begin(self, row: Row) -> None:
        """A sample starts: the prompt prefilled into the row's slot, as Engine.stream does."""
        T = self.engine.model.config.block_size
        row.context, row.new, row.stops = list(row.job.ids), 0, StopText(row.job.stop)
        row.logits = self.decode.prefill(row.slot, row.context[-T:])

    def _advance(self) -> None:
        """Every row draws its token from its logits; the rows that go on take one batched step (a row
        whose window is full is refilled alone from its last half window instead)."""
        T, stepping = self.engine.model.config.block_size, []
        for row, token in self._draw():
            job = row.job
            row.context.append(token)
            row.new += 1
            text, stopped = row.stops.feed(self.engine.show(token))
            if text and not self._tell(job, ("text", row.choice, text)):
                self._leave(row)
                continue
            eot = job.stop_at_eot and token == self.engine.vocab.eot
            if stopped or eot or row.new == job.max_new_tokens:
                self._finish(row, "stop" if stopped or eot else "length")
            elif self.decode.pos[row.slot] < T:
                stepping.append((row, token))
            else:
                row.logits = self.decode.prefill(row.slot, row.context[-half_window(T) :])
        if stepping:
            logits = self.decode.step([r.slot for r, _ in stepping], [t for _, t in stepping])
            for i, (row, _) in enumerate(stepping):
                row.logits = logits[i : i + 1]

    def _draw(self) -> list[tuple[Row, int]]:
        """The next token of every row still wanted (a cancelled one leaves), the rows with the same
        sampling settings drawn together (engine.pick: each row as if alone)."""
        groups: dict[SamplingParams, list[Row]] = {}
        for row in list(self.rows):
            if row.job.cancelled:
                self._leave(row)
            else:
                groups.setdefault(row.job.params, []).append(row)
        drawn = []
        for params, rows in groups.items():
            logits = torch.cat([r.logits for r in rows]) if len(rows) > 1 else rows[0].logits
            drawn += zip(rows, pick(logits, params, [r.generator for r in rows]))
        return drawn

    def _finish(self, row: Row, reason: str) -> None:
        """A sample ends: what was held back for the stop strings goes out, then the next sample, or the job ends."""
        job, rest = row.job, row.stops.flush()  # empty after a stop string
        if rest and not self._tell(job, ("text", row.choice, rest)):
            return self._leave(row)
        if not self._tell(job, ("end", row.choice, reason, row.new)):
            return self._leave(row)
        if row.choice + 1 < job.n:
            row.choice += 1
            return self._begin(row)
        self._tell(job, ("done",))
        self._leave(row)

    def _tell(self, job: Job, event: Event) -> bool:
        """Send an event; False (and the job cancelled) where its receiver is gone."""
        try:
            job.emit(event)
            return True
        except Exception:
            job.cancelled = True
            return False

    def _leave(self, row: Row) -> None:
        self.rows.remove(row)
        self.free.append(row.slot)
