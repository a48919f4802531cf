"""The inference engine: a run folder loaded on its own, and text generated with a KV cache.

    from minigpt.engine import Engine
    engine = Engine.load("runs/c4-en-3000-seed")
    print(engine.generate("The weather today", max_new_tokens=200, temperature=0.8, seed=1))

The prompt is run through the model once (prefill), then each new token is one forward step over
the cache. Sliding window: the model was trained on positions up to block_size only, so when the
context fills the window, the cache is rebuilt from the most recent half window (block_size // 2
tokens, at least one: decode.half_window) and generation goes on from there. Until then, greedy output is token for token what recomputing the
whole context at every step gives; past it, the model sees between block_size / 2 and block_size
tokens of context, and one prefill every block_size / 2 tokens keeps the cost low.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from . import memory
from .checkpoint import load_model, open_run
from .decode import CompiledDecode, CompileFailed, CPUDecode, Decode, GraphedDecode, half_window
from .errors import UserError, brief
from .kernels import cpu_decode_layout, reduce_layout
from .model import GPT
from .device import resolve_device
from .data.vocab import Vocab

UNK_SHOWN = "\ufffd"  # how <unk> is printed: the Unicode replacement character


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8  # 0: greedy
    top_k: int | None = None  # keep the k most likely tokens
    top_p: float | None = None  # keep the smallest set of tokens whose probability reaches p

    def check(self) -> None:
        if self.temperature < 0:
            raise UserError(
                f"--temperature must be 0 or more (got {self.temperature})", "0 is greedy; 0.8 is a good start"
            )
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"--top-k must be at least 1 (got {self.top_k})", "leave it out to keep every token")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UserError(
                f"--top-p must be in (0, 1] (got {self.top_p})", "e.g. 0.9; leave it out to keep every token"
            )


def filter_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus): excluded tokens get -inf. logits: (B, vocab)."""
    logits = logits / params.temperature
    if params.top_k is not None and params.top_k < logits.size(-1):
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p is not None and params.top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens before it already reach top_p (the first one always stays)
        drop = probs.cumsum(dim=-1) - probs >= params.top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def draw(probs: torch.Tensor, generators: list[torch.Generator]) -> list[int]:
    """One token per row of probs (n, vocab), row i drawn with generators[i]: torch.multinomial's own
    method for one sample (the argmax of p / q, with q ~ Exp(1) drawn from the generator), written out
    so that rows with generators of their own share one division and one argmax (minigpt-serve)."""
    q = torch.empty_like(probs)
    for row, generator in zip(q, generators):
        row.exponential_(generator=generator)
    return (probs / q).argmax(dim=-1).tolist()


def pick(logits: torch.Tensor, params: SamplingParams, generators: list[torch.Generator]) -> list[int]:
    """The next token of each row of logits (n, vocab): the most likely at temperature 0, else a draw
    from the filtered distribution with the row's generator (what a seed fixes). Row by row, the same
    tokens whatever the other rows are."""
    if params.temperature == 0:
        return logits.argmax(dim=-1).tolist()
    return draw(torch.softmax(filter_logits(logits.float(), params), dim=-1), generators)


class Engine:
    def __init__(
        self,
        model: GPT,
        vocab: Vocab,
        device: torch.device,
        cpu_layout: bool = True,
        cuda_graph: bool = True,
        compile: bool = False,
    ):
        """Takes the model over for inference (decode.py has the steps). On the CPU one-token steps run
        CPUDecode over the slab layout (cpu_layout=False keeps the plain model, e.g. to time it); on
        CUDA the step and the refill replay CUDA graphs (cuda_graph=False launches kernels one by one).
        compile=True (CPU and CUDA) compiles the step with torch.compile, here, before any text: a
        CompiledDecode on the CPU, the compiled step inside the graph on CUDA."""
        self.compile = compile and device.type in ("cpu", "cuda")
        self.cuda_graph = cuda_graph and device.type == "cuda"
        self._cpu_layout = cpu_layout and device.type == "cpu"  # asked for: also where compiling fails
        if self.compile and device.type == "cpu":
            reduce_layout(model)
        elif self.cpu_layout:
            cpu_decode_layout(model)
        self.model, self.vocab, self.device = model.eval(), vocab, device
        self._fixed: GraphedDecode | CompiledDecode | None = None  # made once, kept with its cache
        if self.compile:  # now: seconds, before any text, and a failure's note before it too
            print(
                "compiling the decoding step with torch.compile (up to tens of seconds the first time; a few "
                "once inductor has it in its disk cache)",
                file=sys.stderr,
            )
            self._decoder()

    @property
    def cpu_layout(self) -> bool:
        """One-token steps on the CPU run CPUDecode over the slab layout (not when compiled)."""
        return self._cpu_layout and not self.compile

    @classmethod
    def load(
        cls,
        run: Path | str,
        device: str = "auto",
        cpu_layout: bool = True,
        cuda_graph: bool = True,
        compile: bool = False,
    ) -> "Engine":
        saved = open_run(run)
        dev = resolve_device(device)
        model = load_model(saved, dev)
        note = memory.check(
            memory.decode_need(saved.model),
            memory.available(dev),
            dev,
            f"sampling from {saved.path} (a window of {saved.model.block_size:,} tokens)",
            lambda: ["sample on a device with more memory (--device cpu)"],
        )
        if note:
            print(note, file=sys.stderr)
        vocab = saved.vocab
        return cls(model, vocab, dev, cpu_layout, cuda_graph, compile)

    def encode_prompt(self, prompt: str, allow_unk: bool = False) -> tuple[list[int], list[str]]:
        """<eot> (a document start) and the prompt's tokens; and the prompt characters outside the vocabulary."""
        unknown = self.vocab.outside(prompt)
        if unknown and not allow_unk:
            raise UserError(
                f"the prompt has {len(unknown)} character(s) outside the vocabulary: {self.vocab.listed(unknown)}",
                "remove them, or add --allow-unk to map them to <unk>",
            )
        return [self.vocab.eot] + self.vocab.encode(prompt), unknown

    @torch.inference_mode()
    def stream(
        self,
        ids: list[int],
        max_new_tokens: int,
        params: SamplingParams,
        generator: torch.Generator,
        stop_at_eot: bool = False,
        use_cache: bool = True,
    ) -> Iterator[int]:
        """Yields new token ids one at a time. use_cache=False recomputes the whole window each step."""
        T = self.model.config.block_size
        context, logits = list(ids), None
        step = self._decoder() if use_cache else None
        for i in range(max_new_tokens):
            if step is None:
                logits = self.model(torch.tensor([context[-T:]], device=self.device))[0][:, -1]
            elif i == 0:
                logits = step.prefill(context[-T:])
            token = pick(logits, params, [generator])[0]
            context.append(token)
            yield token
            if stop_at_eot and token == self.vocab.eot:
                return
            if step is not None:  # one step over the cache, or, when the window is full, a fresh half window
                logits = step(token) if step.cache.pos < T else step.refill(context[-half_window(T) :])

    @torch.inference_mode()
    def _decoder(self) -> Decode:
        """The decoding step for a stream: the graphed or compiled one, made once and kept with its cache
        (streams take turns with it); else a new CPUDecode (the slab layout) or Decode (the model's
        forward), each with a cache of its own. Where compilation or capture fails: a note, and the
        next best step."""
        while self._fixed is None and (self.cuda_graph or self.compile):  # each failure turns one of them off
            try:
                if self.cuda_graph:
                    self._fixed = GraphedDecode(self.model, self.device, compile=self.compile)
                else:
                    self._fixed = CompiledDecode(self.model, self.device)
            except Exception as e:
                if self.cuda_graph and not isinstance(e, CompileFailed):
                    what, self.cuda_graph = "CUDA graph capture", False  # next: the compiled step, or none
                else:
                    what, self.compile = "torch.compile of the decoding step", False  # next: the graph, or eager
                    if self.cpu_layout:
                        cpu_decode_layout(self.model)
                why = brief(e.__cause__ if isinstance(e, CompileFailed) else e)
                print(f"note: {what} failed ({why}); decoding without it", file=sys.stderr)
        if self._fixed is not None:
            return self._fixed
        return CPUDecode(self.model, self.device) if self.cpu_layout else Decode(self.model, self.device)

    def show(self, token: int) -> str:
        """A token as printed: <unk> as the replacement character, <eot> as a visible marker."""
        if token == self.vocab.unk:
            return UNK_SHOWN
        return "\n<eot>\n" if token == self.vocab.eot else self.vocab.itos[token]

    def generate(
        self,
        prompt: str = "",
        max_new_tokens: int = 200,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 1337,
        stop_at_eot: bool = False,
        allow_unk: bool = False,
    ) -> str:
        """The prompt's continuation as a string (for Python use; the CLI streams)."""
        params = SamplingParams(temperature, top_k, top_p)
        params.check()
        ids, _ = self.encode_prompt(prompt, allow_unk)
        return "".join(next(self.samples(ids, 1, max_new_tokens, params, seed, stop_at_eot)))

    def samples(
        self, ids: list[int], n: int, max_new_tokens: int, params: SamplingParams, seed: int, stop_at_eot: bool = False
    ) -> Iterator[Iterator[str]]:
        """n samples from the same prompt, one after another, each its new tokens as printed, one at a time;
        one generator seeded once draws them all (minigpt-sample prints them as they come)."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        for _ in range(n):
            yield (self.show(t) for t in self.stream(ids, max_new_tokens, params, generator, stop_at_eot))
