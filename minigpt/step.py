"""One optimizer step, run as it is or captured once in a CUDA graph and replayed.

A step is the forward and backward pass of every micro-batch, gradient clipping and the optimizers.
At the seed preset's size that is a few hundred small kernels, and on a GPU launching them one by one
from Python takes longer than running them (BENCHMARKS.md: the GPU sat idle most of a step). So on
CUDA, in one process, in bf16 or fp32, the whole step is captured as one CUDA graph: each step copies
its batches into the graph's input buffers and its learning rate into a tensor that the optimizers
read, and replays the graph. Everywhere else (CPU, MPS, DDP, whose gradient hooks talk to the other
ranks between kernels, fp16, whose grad scaler reads the GPU every step) the same code runs uncaptured.
The evaluation forward pass of a full batch is captured the same way (GraphedForward).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import numpy as np
import torch

from .data.loader import to_device
from .graphs import capture, copy_in, on_side_stream

WARMUP_STEPS = 3  # run before the capture (at lr 0, then undone): torch.compile compiles, optimizers make state


class Step:
    """The step as it is: forward and backward over this process's micro-batches, clip, step, zero."""

    def __init__(
        self,
        net,
        model: torch.nn.Module,
        optimizers: list,
        grad_accum: int,
        grad_clip: float,
        autocast,
        scaler: torch.amp.GradScaler,
        ddp: bool,
        device: torch.device,
    ):
        self.net, self.model, self.optimizers = net, model, optimizers
        self.grad_accum, self.grad_clip = grad_accum, grad_clip  # grad_accum: micro-batches over all ranks
        self.autocast, self.scaler, self.ddp, self.device = autocast, scaler, ddp, device

    def set_lr(self, lr: float) -> None:
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr

    def __call__(
        self, batches: list[np.ndarray], lr: float, keys: list[tuple[int, int, int]] | None = None
    ) -> torch.Tensor:
        """One step; returns this process's share of the step's mean loss, on the device (no sync). keys:
        (seed, step, micro-batch) of each batch, for the model's keyed dropout masks on the CPU."""
        self.set_lr(lr)
        return self.run([to_device(b, self.device) for b in batches], keys)

    def run(self, inputs: list[tuple[torch.Tensor, torch.Tensor]], keys: list | None = None) -> torch.Tensor:
        step_loss = torch.zeros((), device=self.device)
        masks = getattr(self.model, "dropout_masks", None) if keys else None
        for i, (x, y) in enumerate(inputs):
            # DDP averages gradients over ranks on the last micro-step only
            sync = self.net.no_sync() if self.ddp and i < len(inputs) - 1 else nullcontext()
            if masks is not None:
                masks.key(*keys[i])
            try:
                with sync:
                    with self.autocast:
                        _, loss = self.net(x, y)
                    self.scaler.scale(loss / len(inputs)).backward()
            finally:
                if masks is not None:
                    masks.clear()
            step_loss += loss.detach() / self.grad_accum
        if self.grad_clip > 0:
            for opt in self.optimizers:
                self.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        for opt in self.optimizers:
            self.scaler.step(opt)
        self.scaler.update()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        return step_loss


class GraphedStep(Step):
    """The step captured once as a CUDA graph (see the module's docstring), from its first batches."""

    def __init__(self, *args, first: list[np.ndarray]):
        super().__init__(*args)
        self.batches = torch.zeros((len(first), *first[0].shape), dtype=torch.int64, device=self.device)
        self.lr = torch.zeros((), device=self.device)  # the optimizers read the rate here inside the graph
        inputs = [(b[:, :-1], b[:, 1:]) for b in self.batches]  # views of the graph's input buffers
        self._copy_in(first)
        with rewound(self.model, self.optimizers, self.device), lr_tensor(self.optimizers, self.lr, False):
            on_side_stream(lambda: self.run(inputs), WARMUP_STEPS, self.device)  # lr is 0 here
        try:
            with lr_tensor(self.optimizers, self.lr, True):
                self.graph, self.loss = capture(lambda: self.run(inputs), self.device)  # loss: rewritten by replays
        except BaseException:
            for opt in self.optimizers:
                opt.zero_grad(set_to_none=True)  # gradients the failed capture left behind
            raise

    def _copy_in(self, batches: list[np.ndarray]) -> None:
        for buffer, b in zip(self.batches, batches):
            copy_in(buffer, b)

    def __call__(self, batches: list[np.ndarray], lr: float, keys=None) -> torch.Tensor:
        self.set_lr(lr)  # the float too: checkpoints save the optimizers' param_groups
        self.lr.fill_(lr)
        self._copy_in(batches)
        self.graph.replay()
        return self.loss


@contextmanager
def lr_tensor(optimizers: list, lr: torch.Tensor, capturable: bool):
    """The optimizers read their rate from a tensor (and AdamW may be captured) inside; floats after."""
    saved = [[(g["lr"], g.get("capturable")) for g in opt.param_groups] for opt in optimizers]
    for opt in optimizers:
        for g in opt.param_groups:
            g["lr"] = lr
            if "capturable" in g:
                g["capturable"] = capturable
    try:
        yield
    finally:
        for opt, groups in zip(optimizers, saved):
            for g, (rate, cap) in zip(opt.param_groups, groups):
                g["lr"] = rate
                if cap is not None:
                    g["capturable"] = cap


@contextmanager
def rewound(model: torch.nn.Module, optimizers: list, device: torch.device):
    """Whatever runs inside leaves the weights, the optimizers' state and the RNGs as they were.

    Optimizer state tensors made inside (the first step creates them) are zeroed: a momentum buffer or
    an Adam moment at zero and a step count of 0 are what a fresh optimizer starts from."""
    params = [p.detach().clone() for p in model.parameters()]
    states = [
        {p: {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()} for p, s in opt.state.items()}
        for opt in optimizers
    ]
    rng = torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, saved in zip(model.parameters(), params):
                p.copy_(saved)
            for opt, before in zip(optimizers, states):
                for p, state in opt.state.items():
                    for k, v in state.items():
                        if torch.is_tensor(v) and p in before:
                            v.copy_(before[p][k])
                        elif torch.is_tensor(v):
                            v.zero_()
                        elif p in before:
                            state[k] = before[p][k]
        torch.set_rng_state(rng[0])
        if rng[1] is not None:
            torch.cuda.set_rng_state(rng[1], device)
