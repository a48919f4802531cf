"""The inference engine: a run folder loaded on its own, and text generated with a KV cache.

    from minigpt.engine import Engine
    engine = Engine.load("runs/c4-en-3000-seed")
    print(engine.generate("The weather today", max_new_tokens=200, temperature=0.8, seed=1))

The prompt is run through the model once (prefill), then each new token is one forward step over
the cache. Sliding window: the model was trained on positions up to block_size only, so when the
context fills the window, the cache is rebuilt from the most recent block_size // 2 tokens and
generation goes on from there. Until then, greedy output is token for token what recomputing the
whole context at every step gives; past it, the model sees between block_size / 2 and block_size
tokens of context, and one prefill every block_size / 2 tokens keeps the cost low.
"""

from __future__ import annotations

import json
import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn
from torch.nn import functional as F

from .checkpoint import CONFIG, RUNS_DIR, VOCAB, WEIGHTS
from .errors import UserError, brief
from .model import GPT, GPTConfig, KVCache, rotary
from .step import capture
from .trainer import resolve_device
from .vocab import Vocab

UNK_SHOWN = "\ufffd"  # how <unk> is printed: the Unicode replacement character


def find_run(path: Path | None) -> Path:
    """The run folder to sample from: the one given, or the newest under runs/."""
    if path is not None:
        return Path(path)
    found = sorted((p for p in RUNS_DIR.glob("*") if (p / WEIGHTS).is_file()), key=lambda p: (p / WEIGHTS).stat().st_mtime)
    if not found:
        raise UserError(f"no trained run under {RUNS_DIR.resolve()}",
                        "train one first with `minigpt-train` (e.g. minigpt-train --preset tiny), or pass --run DIR")
    return found[-1]


@dataclass
class SamplingParams:
    temperature: float = 0.8  # 0: greedy
    top_k: int | None = None  # keep the k most likely tokens
    top_p: float | None = None  # keep the smallest set of tokens whose probability reaches p

    def check(self) -> None:
        if self.temperature < 0:
            raise UserError(f"--temperature must be 0 or more (got {self.temperature})", "0 is greedy; 0.8 is a good start")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"--top-k must be at least 1 (got {self.top_k})", "leave it out to keep every token")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1] (got {self.top_p})", "e.g. 0.9; leave it out to keep every token")


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


class CPUDecodeLinear(nn.Module):
    """nn.Linear laid out for one-token steps on the CPU.

    A decoding step multiplies one row of activations by every weight matrix, so it is bound by memory
    bandwidth; MKL's matrix-vector product runs on one core and reaches about a quarter of what the
    memory gives on our 2-core machine (BENCHMARKS.md). Here the weight is stored transposed and cut along
    the input dimension into one slab per thread: `bmm` multiplies the slabs in parallel and a small sum
    adds the partial results. Several rows (a prefill) take the usual matrix product on the same storage.
    """

    def __init__(self, linear: nn.Linear, parts: int):
        super().__init__()
        out_features, in_features = linear.weight.shape
        slabs = linear.weight.detach().t().contiguous().view(parts, in_features // parts, out_features)
        self.register_buffer("slabs", slabs, persistent=False)  # (parts, in / parts, out)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts, _, out_features = self.slabs.shape
        if x.shape[:-1].numel() > 1:
            return F.linear(x, self.slabs.view(-1, out_features).t(), self.bias)
        y = torch.bmm(x.reshape(parts, 1, -1), self.slabs).sum(0).view(*x.shape[:-1], out_features)
        return y if self.bias is None else y + self.bias


def cpu_decode_layout(model: GPT) -> GPT:
    """Swap the blocks' Linear layers for CPUDecodeLinear, in place: for a model that only generates."""
    threads = torch.get_num_threads()
    for block in model.blocks:
        for parent in (block.attn, block.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, CPUDecodeLinear(child, math.gcd(child.in_features, threads)))
    return model


class ReduceLinear(nn.Linear):
    """nn.Linear whose one-row product, under torch.compile, is written out as a reduction over each
    output's row of weights: inductor turns it into one C++ loop that reads the weights at 23-33 GB/s
    on our 2-core VM, where the matrix-vector call it would otherwise make reads ~11 (BENCHMARKS.md).
    Outside torch.compile, or for several rows, it is nn.Linear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling() or x.shape[:-1].numel() > 1:
            return F.linear(x, self.weight, self.bias)
        y = (self.weight * x.reshape(1, -1)).sum(-1).view(*x.shape[:-1], -1)  # (out, in) * (1, in) -> (out,)
        return y if self.bias is None else y + self.bias


def reduce_layout(model: GPT) -> GPT:
    """Make the blocks' Linear layers ReduceLinear, in place (the same parameters): for CompiledDecode."""
    for block in model.blocks:
        for parent in (block.attn, block.mlp):
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear:
                    swapped = ReduceLinear(child.in_features, child.out_features, bias=False, device="meta")
                    swapped.weight, swapped.bias = child.weight, child.bias
                    setattr(parent, name, swapped)
    return model


class IndexedDecode:
    """The one-token step over its own KV cache, batch 1, reading the token and its position from two
    tensors, so that one captured or compiled step serves every position (the model's indexed path:
    keys and values written at the position, the slots past it masked). Subclasses say how it runs."""

    def __init__(self, model: GPT, device: torch.device):
        self.model, self.device = model, device
        self.cache = KVCache(model.config, 1, device)
        self.token = torch.zeros((1, 1), dtype=torch.long, device=device)
        self.index = torch.zeros(1, dtype=torch.long, device=device)

    def step(self) -> torch.Tensor:
        """The model's step at cache.index (set by the caller): the logits (1, vocab)."""
        return self.model(self.token, cache=self.cache)[0][:, -1]

    @contextmanager
    def indexed(self):
        self.cache.index = self.index
        try:
            yield
        finally:
            self.cache.index = None

    def run(self) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, token: int) -> torch.Tensor:
        """The logits (1, vocab) after `token` at position cache.pos; read them before the next call."""
        self.token.fill_(token)
        self.index.fill_(self.cache.pos)
        logits = self.run()
        self.cache.pos += 1
        return logits


class CompiledDecode(IndexedDecode):
    """The one-token step on the CPU, compiled with torch.compile (--compile).

    Inductor fuses the ~170 small operations into a few loops and, with ReduceLinear, reads the weights
    faster than MKL's matrix-vector product. Compiling takes seconds (inductor caches the result on
    disk for the next run); the logits agree with the eager step to float rounding."""

    def __init__(self, model: GPT, device: torch.device):
        super().__init__(model, device)
        self.compiled = torch.compile(self.step, fullgraph=True, dynamic=False)
        with torch.inference_mode():  # as Engine.stream runs it, so that the first call compiles for good
            self(0)  # and a failure shows here; the prefill overwrites what this step wrote
        self.cache.pos = 0

    def run(self) -> torch.Tensor:
        with self.indexed():
            return self.compiled()


class CPUDecode:
    """The one-token step over a KV cache on the CPU, batch 1: GPT.forward's arithmetic, op for op
    (the same logits, bit for bit; a test checks it), as one flat loop over the layers.

    With the weights in CPUDecodeLinear's slabs a step is ~3.5 ms of matrix-vector products and ~1 ms
    of ~170 small operations; going through the modules (shape bookkeeping for any batch and length,
    views, permutes, dropout and module calls) adds a few tenths of a millisecond to that (+5%
    characters per second without it; BENCHMARKS.md)."""

    def __init__(self, model: GPT, device: torch.device):
        self.model, self.cache = model, KVCache(model.config, 1, device)

    def __call__(self, token: int) -> torch.Tensor:
        """The logits (1, vocab) after `token` at position cache.pos."""
        m, cache, pos = self.model, self.cache, self.cache.pos
        C, nh = m.config.n_embd, m.config.n_head
        hs = C // nh
        x = m.wte.weight[token].view(1, C)
        if m.wpe is not None:
            x = x + m.wpe.weight[pos]
        else:
            rope = m.rope_cos[pos], m.rope_sin[pos]  # (hs,)
        for i, block in enumerate(m.blocks):
            attn, mlp, ln = block.attn, block.mlp, block.ln_1
            qkv = attn.c_attn(F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)).view(3, nh, hs)
            qk, v = qkv[:2], qkv[2]
            if attn.qk_norm:
                qk = F.rms_norm(qk, (hs,))
            if m.wpe is None:
                qk = rotary(qk, *rope)
            cache.k[i][0, :, pos], cache.v[i][0, :, pos] = qk[1], v
            y = F.scaled_dot_product_attention(qk[0].view(1, nh, 1, hs), cache.k[i][:, :, :pos + 1],
                                               cache.v[i][:, :, :pos + 1])  # (1, nh, 1, hs)
            x = x + attn.c_proj(y.view(1, C))
            ln = block.ln_2
            x = x + mlp.c_proj(mlp.act(mlp.c_fc(F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps))))
        cache.pos += 1
        return m.lm_head(m.ln_f(x))


class GraphedDecode(IndexedDecode):
    """The one-token step captured as a CUDA graph.

    On a GPU a step of a small model is some hundred kernels of microseconds each, and launching them
    from Python costs more than running them (BENCHMARKS.md: there the cache alone gave no speed-up).
    The graph leaves the logits in a fixed tensor. Prefills go through the model as usual, into the
    same cache."""

    def __init__(self, model: GPT, device: torch.device):
        super().__init__(model, device)
        with self.indexed():
            self.graph, self.logits = capture(self.step, device, warmup=2)

    def run(self) -> torch.Tensor:
        self.graph.replay()
        return self.logits


class Engine:
    def __init__(self, model: GPT, vocab: Vocab, device: torch.device, cpu_layout: bool = True,
                 cuda_graph: bool = True, compile: bool = False):
        """Takes the model over for inference: on the CPU its Linear layers get the decoding layout and
        one-token steps run CPUDecode (cpu_layout=False keeps the plain model, e.g. to time it), or with
        compile=True a CompiledDecode (CPU only); on CUDA, batch-1 decoding steps replay a CUDA graph
        (cuda_graph=False launches them one by one)."""
        cpu = device.type == "cpu"
        self.compile = compile and cpu
        self.cpu_layout = cpu_layout and cpu and not self.compile
        if self.compile:
            reduce_layout(model)
        elif self.cpu_layout:
            cpu_decode_layout(model)
        self.model, self.vocab, self.device = model.eval(), vocab, device
        self.cuda_graph = cuda_graph and device.type == "cuda"
        self._fixed: GraphedDecode | CompiledDecode | None = None  # made on first use, kept with its cache
        if self.compile:
            self._decode_step()  # compile now: seconds, before any text, and a failure's note before it too

    @classmethod
    def load(cls, run: Path | str, device: str = "auto", cpu_layout: bool = True, cuda_graph: bool = True,
             compile: bool = False) -> "Engine":
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        run = Path(run)
        if not run.is_dir():
            raise UserError(f"--run {run}: no such folder", "pass a run folder written by minigpt-train")
        missing = [name for name in (CONFIG, VOCAB, WEIGHTS) if not (run / name).is_file()]
        if missing:
            raise UserError(f"{run} is missing {', '.join(missing)}",
                            "a run folder needs config.json, vocab.json and model.safetensors; was training finished?")
        try:
            cfg = GPTConfig(**json.loads((run / CONFIG).read_text(encoding="utf-8"))["model"])
            vocab = Vocab.load(run / VOCAB)
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{run}: cannot read config.json or vocab.json ({type(e).__name__}: {e})",
                            "the run folder is damaged; train again or restore it") from None
        if cfg.vocab_size != len(vocab):
            raise UserError(f"{run}: the model has {cfg.vocab_size} tokens but vocab.json has {len(vocab)}",
                            "vocab.json does not belong to these weights; copy the dataset's vocab.json back")
        dev = resolve_device(device)
        model = GPT(cfg)
        try:
            load_model(model, str(run / WEIGHTS), device=str(dev))
        except SafetensorError as e:
            raise UserError(f"{run / WEIGHTS} is not a readable safetensors file ({e})",
                            "the file is damaged or incomplete; take it from the run's checkpoint again") from None
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise UserError(f"{run / WEIGHTS} does not match config.json: {first}",
                            "the weights and config.json come from different runs") from None
        return cls(model.to(dev), vocab, dev, cpu_layout, cuda_graph, compile)

    def encode_prompt(self, prompt: str, allow_unk: bool = False) -> tuple[list[int], list[str]]:
        """<eot> (a document start) and the prompt's tokens; and the prompt characters outside the vocabulary."""
        known = set(self.vocab.itos[2:])
        unknown = sorted({c for c in prompt if c not in known})
        if unknown and not allow_unk:
            shown = ", ".join(repr(c) for c in unknown[:20]) + (" ..." if len(unknown) > 20 else "")
            raise UserError(f"the prompt has {len(unknown)} character(s) outside the vocabulary: {shown}",
                            "remove them, or add --allow-unk to map them to <unk>")
        return [self.vocab.eot] + self.vocab.encode(prompt), unknown

    @torch.inference_mode()
    def stream(self, ids: list[int], max_new_tokens: int, params: SamplingParams, generator: torch.Generator,
               stop_at_eot: bool = False, use_cache: bool = True) -> Iterator[int]:
        """Yields new token ids one at a time. use_cache=False recomputes the whole window each step."""
        T = self.model.config.block_size
        context, logits = list(ids), None
        step = self._decode_step() if use_cache else None  # None: the model's forward decodes
        cache = step.cache if step else KVCache(self.model.config, 1, self.device)

        def prefill(tokens: list[int]) -> torch.Tensor:
            cache.pos = 0  # the slots past the new tokens are never read (sliced off, or masked)
            return self.model(torch.tensor([tokens], device=self.device), cache=cache)[0][:, -1]

        for i in range(max_new_tokens):
            if not use_cache:
                logits = self.model(torch.tensor([context[-T:]], device=self.device))[0][:, -1]
            elif i == 0:
                logits = prefill(context[-T:])
            if params.temperature == 0:
                token = int(torch.argmax(logits, dim=-1))
            else:
                probs = torch.softmax(filter_logits(logits.float(), params), dim=-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
            context.append(token)
            yield token
            if stop_at_eot and token == self.vocab.eot:
                return
            if use_cache:  # one step over the cache, or, when the window is full, a fresh half window
                if cache.pos < T and step:
                    logits = step(token)
                elif cache.pos < T:
                    logits = self.model(torch.tensor([[token]], device=self.device), cache=cache)[0][:, -1]
                else:
                    logits = prefill(context[-(T // 2):])

    def _decode_step(self) -> CPUDecode | GraphedDecode | CompiledDecode | None:
        """The one-token step: on the CPU with the decoding layout a CPUDecode (its own cache, so streams
        do not share one); the captured (CUDA) or compiled (CPU) step, made on first use; None elsewhere
        (the model's forward then decodes). Where capture or compilation fails, a note, and without it."""
        if self.cpu_layout:
            return CPUDecode(self.model, self.device)
        if self._fixed is None and (self.cuda_graph or self.compile):
            try:
                self._fixed = GraphedDecode(self.model, self.device) if self.cuda_graph else CompiledDecode(
                    self.model, self.device)
            except Exception as e:
                what = "CUDA graph capture" if self.cuda_graph else "torch.compile of the decoding step"
                print(f"note: {what} failed ({brief(e)}); decoding without it", file=sys.stderr)
                self.cuda_graph = False
                if self.compile:  # the eager CPU step instead
                    self.compile, self.cpu_layout = False, True
                    cpu_decode_layout(self.model)
                    return CPUDecode(self.model, self.device)
        return self._fixed

    def show(self, token: int) -> str:
        """A token as printed: <unk> as the replacement character, <eot> as a visible marker."""
        if token == self.vocab.unk:
            return UNK_SHOWN
        return "\n<eot>\n" if token == self.vocab.eot else self.vocab.itos[token]

    def generate(self, prompt: str = "", max_new_tokens: int = 200, temperature: float = 0.8, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 1337, stop_at_eot: bool = False, allow_unk: bool = False) -> str:
        """The prompt's continuation as a string (for Python use; the CLI streams)."""
        params = SamplingParams(temperature, top_k, top_p)
        params.check()
        ids, _ = self.encode_prompt(prompt, allow_unk)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return "".join(self.show(t) for t in self.stream(ids, max_new_tokens, params, generator, stop_at_eot))
