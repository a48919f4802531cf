"""The model's own layers for CPU training: dropout whose masks are keyed by (seed, step, micro-batch), and
ReLU squared with a backward pass of two operations."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from . import keys


class DropoutMasks:
    """Dropout masks for CPU training, drawn by numpy's PCG64 and keyed by (seed, step, micro-batch).

    torch's CPU dropout draws from one Mersenne Twister, element by element: a large share of a small
    model's step (BENCHMARKS.md). Here 16 random bits an element come from PCG64 (faster than Philox, which
    the batches use), and p is rounded to 1/65536. Each key
    (seed, stream, micro-batch, step) seeds its own generator through a SeedSequence, so the masks are a
    function of the step, like the batches: a resumed run, or K processes under torchrun taking their
    micro-batches of a step, draw exactly the masks of one uninterrupted process. The trainer's step
    sets the key before each micro-batch (key) and clears it after; with no key the model's dropout is
    torch's."""

    def __init__(self):
        self.gen: np.random.PCG64 | None = None

    def key(self, seed: int, step: int, micro: int) -> None:
        self.gen = np.random.PCG64(np.random.SeedSequence([seed, keys.DROPOUT, micro, step]))

    def clear(self) -> None:
        self.gen = None

    def kept(self, shape: torch.Size, p: float) -> tuple[torch.Tensor, float]:
        """The next mask for a tensor of this shape (True where kept), and the scale of what is kept."""
        n = math.prod(shape)
        bits = self.gen.random_raw((n + 3) // 4).view(np.int16)[:n]  # uniform over int16
        dropped = round(p * 65536)  # the int16 values below the threshold are dropped: p rounded to 1/65536
        kept = torch.from_numpy(bits >= dropped - 32768)  # compared by numpy: torch's int16 >= took 45x longer
        return kept.view(shape), 65536 / (65536 - dropped)

    def drop(self, x: torch.Tensor, p: float) -> torch.Tensor:
        """x with the next mask applied: 0 where dropped, x / (1 - p) where kept. In fp32 exactly x times the
        factors (0 or 1 / (1 - p)); in bf16 the factor is applied as a float, not rounded to bf16 first
        (1/0.9 would be 1.109 there: 0.2% too small)."""
        kept, scale = self.kept(x.shape, p)
        return (x * kept.to(x.dtype)).mul_(scale)

    def usable(self, x: torch.Tensor) -> bool:
        return self.gen is not None and x.device.type == "cpu" and not torch.compiler.is_compiling()


class KeyedDropout(nn.Dropout):
    """nn.Dropout whose mask, on the CPU with a key set, comes from DropoutMasks; torch's otherwise."""

    masks: DropoutMasks | None = None  # set by the model that holds it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.p > 0 and self.masks is not None and self.masks.usable(x):
            return self.masks.drop(x, self.p)
        return super().forward(x)


class _ReLUSquared(torch.autograd.Function):
    """relu(h)^2 whose backward is (grad * r) * 2 with r = relu(h): two passes over the activations, where
    autograd's pow and relu backward make four (a copy for pow(r, 1), two products, threshold_backward).
    The same values: r is 0 wherever relu's gradient is."""

    @staticmethod
    def forward(ctx, h: torch.Tensor) -> torch.Tensor:
        r = torch.relu(h)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (r,) = ctx.saved_tensors
        return (grad * r).mul_(2.0)


def relu_squared(h: torch.Tensor) -> torch.Tensor:
    """ReLU squared: the two-operation backward on the CPU (not under torch.compile, which fuses it anyway)."""
    if h.device.type == "cpu" and not torch.compiler.is_compiling():
        return _ReLUSquared.apply(h)
    return torch.relu(h).square()
