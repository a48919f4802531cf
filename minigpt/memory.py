"""What a run needs in memory, estimated before its first step, against what the device has: a run that
cannot fit is refused with the flags that would fit, instead of growing until the machine runs out.

Training holds the optimizer state, the gradients and one micro-batch's saved activations beside what the
process already holds (the weights, torch's libraries). Activations are linear in the micro-batch's B x T
tokens: ACT_FLOATS per channel, layer and token, and the logits (B, T, V) LOGIT_TENSORS times; where
attention is materialised (the CPU's scaled_dot_product_attention with dropout, and MPS), ATTN_TENSORS
(B, nh, T, T) tensors a layer as well. The constants are fitted to peak RSS (bench/memory_bench.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .errors import UserError

ACT_FLOATS = 28  # saved activations per channel, layer and token, in fp32
LOGIT_TENSORS = 3  # (B, T, V): the logits, their log-softmax, its gradient
ATTN_TENSORS = 4  # (B, nh, T, T) per layer where attention is materialised
EVAL_FLOATS = 9  # an evaluation's forward, per channel, layer and token (freed memory is kept: forward_need)
EVAL_LOGIT_TENSORS = 7  # (B, T, V) in an evaluation's forward and its loss
WARN_SHARE = 0.8  # above this share of what is available, say so at start-up
OPTIMIZER_STATES = {"muon": 1, "adamw": 2}  # fp32 buffers a parameter gets: Muon's momentum; AdamW's two moments


def act_bytes(dtype: torch.dtype) -> float:
    """Bytes of a saved activation: fp32's 4; under bf16/fp16 autocast the matrix products' outputs are
    half-width and the norms, the residual stream and the loss stay fp32, taken here as 3 (not measured:
    no CPU with bf16 instructions or GPU was at hand)."""
    return 4.0 if dtype == torch.float32 else 3.0


def materialises_attention(device: torch.device, dropout: float) -> bool:
    """The CPU's fused attention kernel takes no dropout, so with dropout torch's math path keeps (B, nh, T, T)
    tensors (BENCHMARKS.md); CUDA's kernels take dropout; MPS runs the math path."""
    return device.type == "mps" or (device.type == "cpu" and dropout > 0)


@dataclass
class Need:
    """Bytes a step needs beyond what the process holds, part by part."""

    parts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        return ", ".join(f"{name} {gb(n)}" for name, n in self.parts.items() if n >= 2**19)


def gb(n: float) -> str:
    return f"{n / 2**30:,.1f} GB" if n >= 2**30 / 10 else f"{n / 2**20:,.0f} MB"


def state_need(model, optimizers: list) -> Need:
    """What training holds from its first step to its end: the optimizers' buffers and the gradients."""
    states = sum(
        OPTIMIZER_STATES["muon" if type(o).__name__ == "Muon" else "adamw"] * p.numel() * 4
        for o in optimizers
        for g in o.param_groups
        for p in g["params"]
    )
    grads = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return Need({"optimizer state": states, "gradients": grads})


def train_need(
    model,
    cfg,
    optimizers: list,
    device: torch.device,
    dtype: torch.dtype,
    batch: int | None = None,
    block: int | None = None,
) -> Need:
    """One training step of `batch` x `block` tokens (the run's own by default)."""
    B, T = batch or cfg.batch_size, block or cfg.block_size
    m, ab = model.config, act_bytes(dtype)
    parts = {
        **state_need(model, optimizers).parts,
        "activations": int(B * T * m.n_layer * m.n_embd * ACT_FLOATS * ab),
        "logits": int(B * T * m.vocab_size * LOGIT_TENSORS * 4),
    }
    if materialises_attention(device, cfg.dropout):
        parts["attention"] = int(B * m.n_head * T * T * m.n_layer * ATTN_TENSORS * 4)
    return Need(parts)


def forward_need(config, batch: int, block: int, dtype: torch.dtype) -> Need:
    """A forward pass without gradients (an evaluation batch, a sampler's prompt). Its tensors are freed layer
    by layer, but the CPU's allocator keeps what is freed (device.keep_freed_memory), so the peak still grows
    with the depth."""
    return Need(
        {
            "activations": int(batch * block * config.n_layer * config.n_embd * EVAL_FLOATS * act_bytes(dtype)),
            "logits": int(batch * block * config.vocab_size * EVAL_LOGIT_TENSORS * 4),
        }
    )


def decode_need(config, batch: int = 1) -> Need:
    """Sampling: the KV cache of a whole window for `batch` rows, and the prefill of a window (no gradients)."""
    cache = 2 * config.n_layer * batch * config.block_size * config.n_embd * 4
    return Need({"KV cache": cache, **forward_need(config, batch, config.block_size, torch.float32).parts})


def available(device: torch.device) -> int | None:
    """Bytes this process can still take: the CPU's available memory (and a cgroup's limit, where one is set);
    CUDA's free memory; MPS's recommended working set less what is allocated; None where unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "mps":
        try:
            return torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory()
        except (AttributeError, RuntimeError):
            return None
    found = [n for n in (_meminfo_available(), _cgroup_room()) if n is not None]
    return min(found) if found else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_room() -> int | None:
    """A cgroup v2 memory limit's room (a container's own limit, below what the host has)."""
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((base / "memory.current").read_text())
    except (OSError, ValueError):
        return None


def check(need: Need, free: int | None, device: torch.device, what: str, fixes: Callable[[], list[str]]) -> str | None:
    """A UserError where `need` cannot fit in `free` bytes, naming fixes() (worked out only then); a note where
    it takes most of them; None otherwise (or where what the device has is unknown)."""
    if free is None:
        return None
    if need.total > free:
        place = "this machine" if device.type == "cpu" else str(device)
        raise UserError(
            f"{what} needs about {gb(need.total)} more memory ({need.describe()}), and {place} has "
            f"{gb(free)} available",
            "; or ".join(fixes()) or "a smaller --block-size or --batch-size",
        )
    if need.total > WARN_SHARE * free:
        return f"note: {what} takes about {gb(need.total)} of the {gb(free)} of memory available ({need.describe()})"
    return None


def largest_batch(need_at: Callable[[int], Need], upto: int, free: int, divides: int | None = None) -> int | None:
    """The largest batch b <= upto (a divisor of `divides`, where given) whose need_at(b) fits in free."""
    for b in range(upto, 0, -1):
        if (divides is None or divides % b == 0) and need_at(b).total <= free:
            return b
    return None


def train_fixes(need_at, cfg, free: int) -> list[str]:
    """The flags that would fit a training step: a smaller --batch-size with a larger --grad-accum (the same
    tokens a step), else also a smaller --block-size."""
    B, A, T = cfg.batch_size, cfg.grad_accum, cfg.block_size
    b = largest_batch(lambda b: need_at(b, T), B - 1, free, divides=B)
    if b is not None:
        return [f"--batch-size {b} --grad-accum {A * B // b} (the same {cfg.tokens_per_step:,} tokens a step)"]
    t = T // 2
    while t > 1 and need_at(1, t).total > free:
        t //= 2
    return [f"--batch-size 1 --grad-accum {A * B} --block-size {t} (a shorter context: {A * B * t:,} tokens a step)"]


def free_here(device: torch.device) -> int | None:
    """What this process may still take: on a CPU, shared with the other processes torchrun started here."""
    free = available(device)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if device.type == "cpu" else 1
    return None if free is None else free // local


def check_training(model, cfg, optimizers: list, device: torch.device, dtype: torch.dtype) -> str | None:
    """Before the first step: a step that cannot fit is refused with the flags that would fit; a note where it
    takes most of what is available."""
    free = free_here(device)
    if free is None:
        return None

    def need_at(b=None, t=None):
        return train_need(model, cfg, optimizers, device, dtype, b, t)

    return check(
        need_at(),
        free,
        device,
        f"a training step of {cfg.batch_size} x {cfg.block_size} tokens",
        lambda: train_fixes(need_at, cfg, free),
    )


def fitting_eval_batch(model, cfg, optimizers: list, device: torch.device, dtype: torch.dtype, upto: int) -> int:
    """Evaluation windows a batch: `upto`, or fewer where that many would not fit beside the optimizer state
    (the figure is the same whatever the batch)."""
    free = free_here(device)
    if free is None:
        return upto
    return forward_batch(model.config, dtype, upto, free - state_need(model, optimizers).total) or 1


def forward_batch(config, dtype: torch.dtype, upto: int, room: int) -> int | None:
    """The most windows (of the model's block_size, at most `upto`) that one forward pass fits in `room` bytes."""
    return largest_batch(lambda b: forward_need(config, b, config.block_size, dtype), upto, room)
