"""Optimizers and learning-rate schedules for minigpt-train.

Muon orthogonalises the update of each weight matrix inside the blocks; AdamW takes the rest
(embedding, head, gains). BENCHMARKS.md's ablation is why Muon is the default: at equal steps it gave
the largest single gain of every choice tried.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from .config import TrainConfig
from .model import GPT

WSD_COOLDOWN = 0.2  # wsd: the share of the steps over which the rate falls linearly to min_lr


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to lr, then the schedule: cosine to min_lr at max_iters, wsd or constant."""
    if step < cfg.warmup_iters:
        return cfg.lr * (step + 1) / cfg.warmup_iters
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "wsd":
        left = (cfg.max_iters - step) / max(WSD_COOLDOWN * cfg.max_iters, 1)
        return cfg.final_lr + min(left, 1.0) * (cfg.lr - cfg.final_lr)
    progress = (step - cfg.warmup_iters) / max(cfg.max_iters - cfg.warmup_iters, 1)
    return cfg.final_lr + 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))) * (cfg.lr - cfg.final_lr)


def newton_schulz(
    G: torch.Tensor,
    coefficients: tuple[float, float, float],
    steps: int,
    eps: float,
    dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    """torch.optim.Muon's quintic Newton-Schulz iteration for a stack of matrices: (N, m, n). In bf16 as
    torch's (device.muon_dtype says where), or in fp32: the same operations in the same order."""
    a, b, c = coefficients
    X = G.to(dtype)
    tall = G.size(-2) > G.size(-1)
    if tall:  # iterate on the wide side: the Gram matrix X X^T is then the smaller one
        X = X.mT
    X = X / X.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)  # spectral norm at most 1
    for _ in range(steps):
        A = X @ X.mT
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)
        X = torch.baddbmm(X, B, X, beta=a)
    return X.mT if tall else X


def muon_lr_scale(adjust_lr_fn: str | None, shape: torch.Size) -> float:
    """torch.optim.Muon's per-shape learning-rate factor (its private _adjust_lr)."""
    A, B = shape[:2]
    if adjust_lr_fn == "match_rms_adamw":  # the update's RMS made AdamW's, so one --lr fits both optimizers
        return 0.2 * math.sqrt(max(A, B))
    return math.sqrt(max(1, A / B))  # "original" (Keller Jordan's)


class Muon(torch.optim.Optimizer):
    """torch.optim.Muon's update, batched over matrices of the same shape.

    torch.optim.Muon runs the Newton-Schulz iteration one matrix at a time: ~30 small kernels per
    matrix, 930 operations a step for the seed preset's 32 matrices, which on a GPU costs more in
    launches than in arithmetic. Here the matrices of each shape (4 shapes in a GPT) are stacked and
    iterated together, and the momentum and parameter updates are foreach operations: 102 operations
    a step (bench/muon_bench.py). In bf16 the result is bit for bit torch.optim.Muon's on the CPU (a
    test checks it), with the same hyperparameters and the same state (a momentum buffer per matrix),
    so checkpoints interchange. `ns_dtype` (bf16 as torch's, or fp32) is the iteration's precision; it
    is not part of the saved state, so a checkpoint of either precision resumes in the other.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (3.4445, -4.7750, 2.0315),
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        ns_dtype: torch.dtype = torch.bfloat16,
    ):
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
        )
        super().__init__(params, defaults)
        self.ns_dtype = ns_dtype

    def __getstate__(self) -> dict:  # torch's Optimizer keeps only defaults, state and param_groups
        return {**super().__getstate__(), "ns_dtype": self.ns_dtype}

    def __setstate__(self, state: dict) -> None:  # also load_state_dict's way in: it keeps the precision
        super().__setstate__(state)
        self.ns_dtype = state.get("ns_dtype", getattr(self, "ns_dtype", torch.bfloat16))

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            bufs = [self._momentum_buffer(p) for p in params]
            # the elementwise parts over every matrix at once (one foreach call each), the iteration per shape
            torch._foreach_lerp_(bufs, grads, 1 - group["momentum"])
            updates = torch._foreach_lerp(grads, bufs, group["momentum"]) if group["nesterov"] else bufs
            lr = group["lr"]
            torch._foreach_mul_(params, 1 - lr * group["weight_decay"])  # decoupled weight decay
            by_shape = defaultdict(list)
            for i, p in enumerate(params):
                by_shape[p.shape].append(i)
            for shape, index in by_shape.items():
                ortho = newton_schulz(
                    torch.stack([updates[i] for i in index]),
                    group["ns_coefficients"],
                    group["ns_steps"],
                    group["eps"],
                    self.ns_dtype,
                )
                scale, same = muon_lr_scale(group["adjust_lr_fn"], shape), [params[i] for i in index]
                if torch.is_tensor(lr):  # inside a CUDA graph (step.py): the rate is read from the device
                    torch._foreach_add_(same, list((ortho.to(same[0].dtype) * (-lr * scale)).unbind(0)))
                else:
                    torch._foreach_add_(same, list(ortho.to(same[0].dtype).unbind(0)), alpha=-lr * scale)

    def _momentum_buffer(self, p: torch.Tensor) -> torch.Tensor:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        return state["momentum_buffer"]


def make_optimizers(
    model: GPT, cfg: TrainConfig, device: torch.device, ns_dtype: torch.dtype = torch.bfloat16
) -> list[torch.optim.Optimizer]:
    """AdamW with weight decay on matrices and embeddings only; or, with --optimizer muon, Muon for the
    blocks' matrices (its update scaled to AdamW's size, so the same --lr fits both; its Newton-Schulz
    iteration in ns_dtype) and AdamW for the embeddings, the head and the 1-D gains and biases."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    # fused: one kernel a tensor, on the CPU too (under half the for-loop's time: BENCHMARKS.md); MPS not measured
    adam_kw = dict(lr=cfg.lr, betas=(0.9, cfg.beta2), fused=device.type in ("cuda", "cpu"))
    if cfg.optimizer == "muon":
        hidden = [p for n, p in params.items() if p.dim() == 2 and n.startswith("blocks.")]
        rest = [p for n, p in params.items() if not (p.dim() == 2 and n.startswith("blocks."))]
        embed = [p for p in rest if p.dim() >= 2]
        gains = [p for p in rest if p.dim() < 2]
        return [
            Muon(hidden, lr=cfg.lr, weight_decay=cfg.weight_decay, adjust_lr_fn="match_rms_adamw", ns_dtype=ns_dtype),
            torch.optim.AdamW(
                [{"params": embed, "weight_decay": cfg.weight_decay}, {"params": gains, "weight_decay": 0.0}], **adam_kw
            ),
        ]
    decay = [p for p in params.values() if p.dim() >= 2]  # matrices and embeddings
    no_decay = [p for p in params.values() if p.dim() < 2]  # biases and LayerNorm gains
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [torch.optim.AdamW(groups, **adam_kw)]
