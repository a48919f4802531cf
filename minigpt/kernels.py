"""Linear layers in the forms that run fastest on the CPU, and the one way to put them in a model.

Training: OneDNNLinear sends a Linear layer's three products (forward, input gradient, weight gradient) to
oneDNN through PyTorch's own op for it, `mkldnn._linear_pointwise` (the one inductor calls for frozen CPU
models), checked once against F.linear before it is used: PyTorch's fp32 products go to MKL, which picks
its fast kernels by CPU vendor and takes generic ones elsewhere (BENCHMARKS.md). Decoding: one-token steps
are bound by memory bandwidth, so CPUDecodeLinear lays a weight out in one slab per thread, and
ReduceLinear writes the product out as a reduction that inductor turns into one loop.
"""

from __future__ import annotations

import math
import platform
from functools import lru_cache
from typing import Callable

import torch
import torch.nn as nn
from torch.nn import functional as F

from .device import cpu_vendor


def swap_linears(root: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> nn.Module:
    """Replace every plain nn.Linear under root by make(layer), in place (its name, and so the state_dict's
    keys and the parameters' order, kept)."""
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, make(child))
    return root


def sharing(cls: type[nn.Linear], linear: nn.Linear) -> nn.Linear:
    """A cls (an nn.Linear subclass) holding linear's own parameters: ties to them are kept."""
    swapped = cls(linear.in_features, linear.out_features, bias=False, device="meta")
    swapped.weight, swapped.bias = linear.weight, linear.bias
    return swapped


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
    """Make every nn.Linear of the model a OneDNNLinear, in place (the same parameters, ties kept)."""
    return swap_linears(model, lambda linear: sharing(OneDNNLinear, linear))


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


def cpu_decode_layout(model: nn.Module) -> nn.Module:
    """Swap the blocks' Linear layers for CPUDecodeLinear, in place: for a model that only generates."""
    threads = torch.get_num_threads()
    swap_linears(model.blocks, lambda linear: CPUDecodeLinear(linear, math.gcd(linear.in_features, threads)))
    return model


class ReduceLinear(nn.Linear):
    """nn.Linear whose one-row product, under torch.compile, is written out as a reduction over each
    output's row of weights: inductor turns it into one C++ loop that reads the weights faster than the
    matrix-vector call it would otherwise make (BENCHMARKS.md).
    Outside torch.compile, or for several rows, it is nn.Linear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling() or x.shape[:-1].numel() > 1:
            return F.linear(x, self.weight, self.bias)
        y = (self.weight * x.reshape(1, -1)).sum(-1).view(*x.shape[:-1], -1)  # (out, in) * (1, in) -> (out,)
        return y if self.bias is None else y + self.bias


def reduce_layout(model: nn.Module) -> nn.Module:
    """Make the blocks' Linear layers ReduceLinear, in place (the same parameters): for CompiledDecode."""
    swap_linears(model.blocks, lambda linear: sharing(ReduceLinear, linear))
    return model
