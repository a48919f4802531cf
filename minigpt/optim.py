"""Optimizers and learning-rate schedules for minigpt-train.

Muon (torch.optim.Muon) orthogonalises the update of each weight matrix inside the blocks; AdamW
takes the rest (embedding, head, gains). BENCHMARKS.md's ablation is why Muon is the default: at
equal steps it gave the largest single gain of every choice tried.
"""

from __future__ import annotations

import math

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


def make_optimizers(model: GPT, cfg: TrainConfig, device: torch.device) -> list[torch.optim.Optimizer]:
    """AdamW with weight decay on matrices and embeddings only; or, with --optimizer muon, Muon for the
    blocks' matrices (its update scaled to AdamW's size, so the same --lr fits both) and AdamW for the
    embeddings, the head and the 1-D gains and biases."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    adam_kw = dict(lr=cfg.lr, betas=(0.9, cfg.beta2), fused=device.type == "cuda")
    if cfg.optimizer == "muon":
        hidden = [p for n, p in params.items() if p.dim() == 2 and n.startswith("blocks.")]
        rest = [p for n, p in params.items() if not (p.dim() == 2 and n.startswith("blocks."))]
        embed = [p for p in rest if p.dim() >= 2]
        gains = [p for p in rest if p.dim() < 2]
        return [torch.optim.Muon(hidden, lr=cfg.lr, weight_decay=cfg.weight_decay, adjust_lr_fn="match_rms_adamw"),
                torch.optim.AdamW([{"params": embed, "weight_decay": cfg.weight_decay},
                                   {"params": gains, "weight_decay": 0.0}], **adam_kw)]
    decay = [p for p in params.values() if p.dim() >= 2]  # matrices and embeddings
    no_decay = [p for p in params.values() if p.dim() < 2]  # biases and LayerNorm gains
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [torch.optim.AdamW(groups, **adam_kw)]
