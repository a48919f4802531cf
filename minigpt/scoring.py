"""One scoring loop: the summed loss of fixed windows, batch by batch, kept on the device (one sync a
figure), which the trainer's evaluation and minigpt-eval (and so fine-tuning) both use, so that they give
the same figure for the same windows."""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
from torch.nn import functional as F

from .data.loader import to_device


def forward_of(
    model: torch.nn.Module,
    autocast,
    device: torch.device,
    full: int | None = None,
    fast: Callable | None = None,
    graphed: Callable | None = None,
) -> Callable[[np.ndarray], torch.Tensor]:
    """batch (B, T + 1) -> mean loss: batches of `full` windows through the captured graph (graphed) or the
    compiled model (fast) where there is one; the others, and a last shorter batch, through the plain model,
    so that no new shape makes torch.compile build again."""

    def forward(batch: np.ndarray) -> torch.Tensor:
        if graphed is not None and len(batch) == full:
            return graphed(batch)
        x, y = to_device(batch, device)
        with autocast:
            return ((fast if fast is not None and len(batch) == full else model)(x, y))[1]

    return forward


def summed_loss(
    forward: Callable[[np.ndarray], torch.Tensor],
    batches: Iterable[np.ndarray],
    device: torch.device,
    each: Callable[[np.ndarray], None] | None = None,
) -> torch.Tensor:
    """The sum over windows of their mean loss (divide by the windows for the figure), on the device; each(batch)
    sees every batch too (minigpt-eval counts the targets)."""
    total = torch.zeros((), device=device)
    with torch.no_grad():
        for batch in batches:
            total += forward(batch).float() * len(batch)
            if each is not None:
                each(batch)
    return total


def scored_targets(
    model: torch.nn.Module, autocast, device: torch.device
) -> Callable[[np.ndarray, np.ndarray], torch.Tensor]:
    """(batch (B, T + 1), first (B,)) -> the summed loss of each window's targets from offset first[i] on
    (minigpt-eval --stride: a sliding window scores only the targets its predecessor did not)."""

    def forward(batch: np.ndarray, first: np.ndarray) -> torch.Tensor:
        x, y = to_device(batch, device)
        with torch.no_grad(), autocast:
            logits, _ = model(x)  # (B, T, vocab)
        losses = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
        keep = torch.arange(y.size(1), device=device) >= torch.as_tensor(first, device=device)[:, None]
        return (losses * keep).sum()

    return forward
