"""Training on the CPU: matrix products through oneDNN where MKL is slow, keyed dropout masks, and
ReLU squared with a backward pass of two operations.

PyTorch's fp32 matrix products go to MKL, which picks its fast kernels by CPU vendor: on an AMD EPYC
(Zen 5, AVX-512) it ran the Linear layers' products of a 4 x 128 model at 150-182 GFLOP/s on 2 cores,
where oneDNN (PyTorch's other CPU library, which picks kernels by instruction set) ran the same
products, in fp32, at 206-356 (bench/cpu_bench.py --kernels; BENCHMARKS.md). OneDNNLinear sends a
Linear layer's three products (forward, input gradient, weight gradient) to oneDNN through PyTorch's
own op for it, `mkldnn._linear_pointwise` (the one inductor calls for frozen CPU models), checked once
against F.linear before it is used.
"""

from __future__ import annotations

import math
import platform
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn

from .device import cpu_vendor


def _product(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ w.T (+ bias) by oneDNN, in fp32: x (..., in), w (out, in), either may be a strided view."""
    return torch.ops.mkldnn._linear_pointwise(x, w, bias, "none", [], "")


class _OneDNNLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return _product(x, weight, bias)  # (..., out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = _product(grad, weight.t()) if ctx.needs_input_grad[0] else None  # (..., in)
        g2 = grad.reshape(-1, grad.size(-1))  # (N, out)
        grad_w = _product(g2.t(), x.reshape(-1, x.size(-1)).t()) if ctx.needs_input_grad[1] else None  # g2^T x
        grad_b = g2.sum(0) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


class OneDNNLinear(nn.Linear):
    """nn.Linear whose products run in oneDNN on the CPU in fp32; the same parameters and state_dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
            return super().forward(x)
        return _OneDNNLinearFn.apply(x, self.weight, self.bias)


@lru_cache(maxsize=1)
def onednn_usable() -> bool:
    """oneDNN's linear op is in this torch and gives F.linear's result (checked once on a small case)."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        g = torch.Generator().manual_seed(0)
        x, w = torch.randn(5, 3, 24, generator=g), torch.randn(40, 24, generator=g)
        return torch.allclose(_product(x, w), torch.nn.functional.linear(x, w), rtol=1e-5, atol=1e-5)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def onednn_matmul_rule() -> tuple[bool, str]:
    """Whether CPU training sends its Linear layers to oneDNN, and why: on x86 CPUs not made by Intel
    (where MKL takes its generic kernels), if oneDNN's op works here."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False, "not an x86 CPU"
    if cpu_vendor() == "GenuineIntel":
        return False, "MKL's Intel kernels"
    if not onednn_usable():
        return False, "oneDNN's linear op is not usable in this torch"
    return True, f"MKL is slow on {cpu_vendor() or 'this CPU'}"


def onednn_layout(model: nn.Module) -> nn.Module:
    """Make every nn.Linear of the model a OneDNNLinear, in place (same parameters, ties kept)."""
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = OneDNNLinear
    return model


# data.py's streams under one seed: 0 the batches, 1 the train evaluation's windows, 2 dropout masks
DROPOUT_STREAM = 2


class DropoutMasks:
    """Dropout masks for CPU training, drawn by numpy's PCG64 and keyed by (seed, step, micro-batch).

    torch's CPU dropout draws from one Mersenne Twister, element by element: ~10 ns an element, a quarter
    of a step at 4 x 128, batch 12, dropout 0.2, where the attention's dropout also pushes
    scaled_dot_product_attention off its flash kernel (3x the time of the layer's attention). Here 16
    random bits an element come from PCG64 (~0.4 ns an element; Philox, which data.py's batches use,
    took ~2 ns: 2-3% of that step, bench/cpu_bench.py --kernels), and p is rounded to 1/65536. Each key
    (seed, stream, micro-batch, step) seeds its own generator through a SeedSequence, so the masks are a
    function of the step, like the batches: a resumed run, or K processes under torchrun taking their
    micro-batches of a step, draw exactly the masks of one uninterrupted process. The trainer's step
    sets the key before each micro-batch (key) and clears it after; with no key the model's dropout is
    torch's."""

    def __init__(self):
        self.gen: np.random.PCG64 | None = None

    def key(self, seed: int, step: int, micro: int) -> None:
        self.gen = np.random.PCG64(np.random.SeedSequence([seed, DROPOUT_STREAM, micro, step]))

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
