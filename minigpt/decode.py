"""Decoding steps: batch 1, one new token at a time over a KV cache, in the form that runs it fastest.

A step object holds its own cache and offers prefill (a prompt), refill (the cache rebuilt from the
last half window once the window is full; engine.py has the policy) and a call for one token. `Decode`
runs the model's own forward; the others give the same tokens faster:
- `CPUDecode`: the CPU's default, a flat loop over the layers with the weights in `CPUDecodeLinear`'s slabs.
- `CompiledDecode`: the step compiled with torch.compile (`minigpt-sample --compile` on the CPU).
- `GraphedDecode`: the step, and the refill, captured as CUDA graphs (on CUDA; with --compile the
  compiled step inside the graph).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager, nullcontext

import torch
from torch.nn import functional as F

from .errors import brief
from .model import GPT, KVCache, rotary
from .graphs import capture, on_side_stream


def half_window(block_size: int) -> int:
    """How many of the newest tokens a refill keeps once the window is full (engine.py: the policy)."""
    return max(1, block_size // 2)


class CompileFailed(RuntimeError):
    """torch.compile of a decoding step failed (the engine then decodes without it); __cause__ says why."""


@contextmanager
def compiling():
    """What fails inside is the compilation's: raised as CompileFailed, from the error itself.

    The engine decodes in fp32 on purpose (greedy output equal to recomputation), so inductor's advice
    to turn TF32 on is not passed on to the user."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "TensorFloat32 tensor cores", UserWarning)
            yield
    except Exception as e:
        raise CompileFailed(brief(e)) from e


def compiled(fn):
    """fn compiled once for good: one graph, static shapes (the step's never change). Compiles on the first call."""
    return torch.compile(fn, fullgraph=True, dynamic=False)


class Decode:
    """The model's own forward over a KV cache of its own, batch 1."""

    def __init__(self, model: GPT, device: torch.device):
        self.model, self.device = model, device
        self.cache = KVCache(model.config, 1, device)

    def prefill(self, tokens: list[int]) -> torch.Tensor:
        """The cache filled from `tokens` (at most block_size): the logits (1, vocab) after the last one."""
        self.cache.pos = 0  # the slots past the new tokens are never read (sliced off, or masked)
        return self.model(torch.tensor([tokens], device=self.device), cache=self.cache)[0][:, -1]

    def refill(self, tokens: list[int]) -> torch.Tensor:
        """prefill of the newest half_window(block_size) tokens, when the window is full."""
        return self.prefill(tokens)

    def __call__(self, token: int) -> torch.Tensor:
        """The logits (1, vocab) after `token` at position cache.pos; read them before the next call."""
        return self.model(torch.tensor([[token]], device=self.device), cache=self.cache)[0][:, -1]


class CPUDecode(Decode):
    """The one-token step on the CPU: GPT.forward's arithmetic, op for op (the same logits, bit for bit;
    a test checks it), as one flat loop over the layers.

    A step is mostly its matrix-vector products and ~170 small operations; going through the modules
    (shape bookkeeping for any batch and length, views, permutes, dropout and module calls) would add to
    that a share worth skipping (BENCHMARKS.md)."""

    def __call__(self, token: int) -> torch.Tensor:
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
            y = F.scaled_dot_product_attention(
                qk[0].view(1, nh, 1, hs), cache.k[i][:, :, : pos + 1], cache.v[i][:, :, : pos + 1]
            )  # (1, nh, 1, hs)
            x = x + attn.c_proj(y.view(1, C))
            ln = block.ln_2
            x = x + mlp.c_proj(mlp.act(mlp.c_fc(F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps))))
        cache.pos += 1
        return m.lm_head(m.ln_f(x))


class IndexedDecode(Decode):
    """The one-token step reading the token and its position from two tensors, so that one captured or
    compiled step serves every position (the model's indexed path: keys and values written at the
    position, the slots past it masked). Subclasses say how it runs."""

    def __init__(self, model: GPT, device: torch.device):
        super().__init__(model, device)
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
        self.token.fill_(token)
        self.index.fill_(self.cache.pos)
        logits = self.run()
        self.cache.pos += 1
        return logits


class CompiledDecode(IndexedDecode):
    """The one-token step compiled with torch.compile (--compile; on the CPU, with ReduceLinear).

    Inductor fuses the ~170 small operations into a few loops and, with ReduceLinear, reads the weights
    faster than MKL's matrix-vector product. Compiling takes seconds (inductor caches the result on
    disk for the next run); the logits agree with the eager step to float rounding."""

    def __init__(self, model: GPT, device: torch.device):
        super().__init__(model, device)
        self.compiled = compiled(self.step)
        with compiling(), torch.inference_mode():  # as Engine.stream runs it, so it compiles for good
            self(0)  # and a failure shows here; the prefill overwrites what this step wrote
        self.cache.pos = 0

    def run(self) -> torch.Tensor:
        with self.indexed():
            return self.compiled()


class GraphedDecode(IndexedDecode):
    """The one-token step and the half-window refill, each captured as a CUDA graph.

    On a GPU a step of a small model is some hundred kernels of microseconds each, and launching them
    from Python costs more than running them (BENCHMARKS.md: there the cache alone gave no speed-up).
    A graph replays them with one launch and leaves the logits in a fixed tensor. A refill always has
    half_window(block_size) tokens at positions from 0, so one graph serves every refill too; the prompt's
    prefill, whose length varies, runs through the model as usual, into the same cache. compile=True
    captures the torch.compile'd step (fewer, fused kernels) instead of the model's."""

    def __init__(self, model: GPT, device: torch.device, compile: bool = False):
        super().__init__(model, device)
        step = compiled(self.step) if compile else self.step
        with self.indexed():
            with compiling() if compile else nullcontext():
                on_side_stream(step, 2, device)  # the warm-up capture asks for (and the compilation)
            self.graph, self.logits = capture(step, device)
        self.window = torch.zeros((1, half_window(model.config.block_size)), dtype=torch.long, device=device)
        self.refill_graph, self.refill_logits = capture(self._refill, device, warmup=2)
        self.cache.pos = 0

    def _refill(self) -> torch.Tensor:
        self.cache.pos = 0
        return self.model(self.window, cache=self.cache)[0][:, -1]

    def refill(self, tokens: list[int]) -> torch.Tensor:
        assert len(tokens) == self.window.size(1), "a refill has half_window(block_size) tokens"
        self.window.copy_(torch.tensor([tokens]))
        self.refill_graph.replay()
        self.cache.pos = len(tokens)
        return self.refill_logits

    def run(self) -> torch.Tensor:
        self.graph.replay()
        return self.logits
