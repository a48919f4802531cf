"""CUDA graphs: capture a function once, replay it; shared by the training step (step.py) and decoding
(decode.py). Launching a few hundred small kernels one by one from Python costs more than running them
at minigpt's sizes; a captured graph is launched as one (BENCHMARKS.md)."""

from __future__ import annotations

import numpy as np
import torch


def copy_in(buffer: torch.Tensor, batch: np.ndarray) -> None:
    """A batch into a graph's input buffer, through fresh pinned memory: the copy is asynchronous, so the
    host memory must not be reused before it is done (the caching host allocator sees to that)."""
    buffer.copy_(torch.from_numpy(batch).pin_memory(), non_blocking=True)


def capture(fn, device: torch.device, warmup: int = 0) -> tuple[torch.cuda.CUDAGraph, object]:
    """fn run `warmup` times on a side stream, then captured: the graph, and what fn returned (its
    tensors are the graph's outputs, rewritten by every replay)."""
    if warmup:
        on_side_stream(fn, warmup, device)
    graph, before = torch.cuda.CUDAGraph(), torch.cuda.current_stream(device)
    try:
        with torch.cuda.graph(graph):
            out = fn()
    except BaseException:  # torch.cuda.graph leaves its capture stream current when ending the capture fails
        torch.cuda.set_stream(before)
        raise
    return graph, out


def on_side_stream(fn, times: int, device: torch.device) -> None:
    """Run fn a few times on a side stream, as CUDA graph capture asks of the warm-up before it."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(times):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)


class GraphedForward:
    """The evaluation forward pass of a full batch (eval mode, no gradients), captured once."""

    def __init__(self, net, autocast, shape: tuple[int, int], device: torch.device):
        self.batch = torch.zeros(shape, dtype=torch.int64, device=device)  # (B, T + 1)
        x, y = self.batch[:, :-1], self.batch[:, 1:]
        net.eval()
        try:
            with torch.no_grad(), autocast:
                self.graph, self.loss = capture(lambda: net(x, y)[1], device, warmup=2)
        finally:
            net.train()

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        """The batch's mean loss, on the device; read it before the next call overwrites it."""
        copy_in(self.batch, batch)
        self.graph.replay()
        return self.loss
