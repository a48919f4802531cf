"""minigpt-train's training step on the CPU against a plain PyTorch GPT, side by side, one machine, one dataset.

    python bench/cpu_bench.py --data data/c4-500                 # shapes tiny and laptop, 60 turns
    python bench/cpu_bench.py --data DIR --shapes laptop,laptop32 --json bench/results/cpu.json
    python bench/cpu_bench.py --data DIR --shapes laptop --sides minigpt,minigpt-mkl,minigpt-torch-dropout,baseline
    python bench/cpu_bench.py --data DIR --shapes laptop@0,laptop@0.2  # both sides at dropout 0, then 0.2
    python bench/cpu_bench.py --data DIR --cli 3                 # also `train.py --preset tiny` 3 times, whole
    python bench/cpu_bench.py --ns                               # Muon's iteration alone, bf16 against fp32
    python bench/cpu_bench.py --kernels                          # each replaced piece against what it replaced
    python bench/cpu_bench.py --data DIR --shapes tiny --learn 200  # validation loss against time, trained side by side
    python bench/cpu_bench.py --data DIR --shapes tiny@0 --learn 1000 --sides minigpt-pe3  # a variant beside them
    python bench/cpu_bench.py --data DIR --shapes tiny@0 --learn 1000 --seed 2  # the same with another seed

Sides:
- minigpt: minigpt-train's own step, default recipe, built by the trainer itself (Trainer.open and
  prepare_step: its device settings, its precision rule, its optimizers) and called as its loop does;
- minigpt-no-bf16 (by default only where the rules pick bf16 for the model or Muon's iteration): the
  same with --dtype float32 --muon-dtype float32, which is what a CPU without bf16 instructions runs;
  on request minigpt-fp32 (--dtype float32), minigpt-ns-fp32 (--muon-dtype float32), minigpt-bf16,
  minigpt-adamw, minigpt-compile, and minigpt-mkl / minigpt-torch-dropout (the CPU path without
  oneDNN's Linear, or with torch's own dropout);
- baseline: nanoGPT's CPU recipe (../shared/notes/nanogpt-cpu-recipe.md): its model.py as train.py
  configures it (eager, fp32, learned positions, exact GELU, no biases, one fused qkv projection,
  causal scaled_dot_product_attention, the embedding tied to the head, its init), AdamW as it builds
  it on a CPU (not fused; betas 0.9/0.99 of config/train_shakespeare_char.py, decay 0.1 on tensors of
  2 dims and more), clipping at 1.0, its batch draw (get_batch: the train shard's memmap opened again
  at every call, torch.randint offsets, stacked, cast to int64) and, with --learn, its schedule
  (linear warmup a twentieth of the steps, its 100 of 2,000; cosine to lr/10); the same dropout.
Each side's timed step includes its own batch draw (minigpt's: TokenData.batch, as its loop draws;
the baseline's: get_batch), as each program's iteration does.
Shapes: tiny (the preset: 2 layers x 64, block 32, batch 16), laptop (4 layers, 4 heads, 128 wide,
block 64, batch 12; the rest the seed preset's, as `minigpt-train` with those flags gives), laptop32
(the same, batch 32).

Each shape runs in one fresh process: every side is built and warmed up, then the sides take turns of
--turn-steps steps (default one), the order reversed every round, so that the shared machine's slow and
fast spells fall on all of them. The process carries minigpt-train's malloc setting, the baseline's
side included (a conservative comparison). Per shape and side: ms per step and tokens/s (medians over
every timed step), the optimizer's share of a step (its .step() calls), minor page faults per step;
minigpt over the baseline as a ratio of medians, with the spread of the turn-by-turn ratios. The
host's CPU model and flags and torch's threads head the output; one JSON line at the end (and --json).

--learn STEPS trains instead of timing alone: per shape, in one process, minigpt's default recipe (and
its fp32 twin where a rule picks bf16) and the baseline at each of --base-lrs, each on its own
schedule over STEPS steps (minigpt-train's; nanoGPT's) and its own batch draw, a step each in turn; the validation loss on minigpt-train's
fixed windows every STEPS/20 steps. Per minigpt side: its loss at equal steps, and how much sooner than
the baseline (at its best rate) it reaches the baseline's final loss: its steps to that loss (linear
between evaluations; its schedule still runs to STEPS, so this is conservative) times its ms/step,
against the baseline's STEPS times its ms/step, both medians of the steps timed turn by turn.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minigpt.config import TrainConfig, make_config  # noqa: E402
from minigpt.data.loader import TokenData, find_dataset  # noqa: E402
from minigpt.device import cpu_flags, cpu_name, muon_dtype, resolve_dtype  # noqa: E402
from minigpt.optim import lr_at  # noqa: E402

SHAPES = {
    "tiny": dict(preset="tiny"),
    "laptop": dict(preset="seed", n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12),
    "laptop32": dict(preset="seed", n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=32),
}


# minigpt's sides: the default recipe, and flags that show what a choice of the default is worth
SIDES = {
    "minigpt": {},
    "minigpt-no-bf16": {"dtype": "float32", "muon_dtype": "float32"},
    "minigpt-fp32": {"dtype": "float32"},
    "minigpt-ns-fp32": {"muon_dtype": "float32"},
    "minigpt-compile": {"compile": True},
    "minigpt-adamw": {"optimizer": "adamw"},
    "minigpt-learned-pos": {"pos": "learned"},
    "minigpt-gelu": {"mlp": "gelu"},
    "minigpt-no-qk-norm": {"qk_norm": False},
    "minigpt-bf16": {"dtype": "bfloat16"},
    "minigpt-mkl": {},
    "minigpt-torch-dropout": {},
    "minigpt-pe5": {},
    "minigpt-pe4": {},
    "minigpt-pe3": {},
    "minigpt-ns4": {},
    "minigpt-ns3": {},
}
# Polar Express (Amsel et al. 2025, arXiv 2505.16932): a coefficient triple per iteration, computed for 5
# iterations (safety factor 2e-2, cushion 2), as modded-nanogpt and nanochat use them; greedy, so its first
# k are its k-iteration method. Sides minigpt-peK iterate K of them, minigpt-nsK torch's quintic K times.
POLAR_EXPRESS = [
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
]


def polar_express(G: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    """k Polar Express iterations on a stack (N, m, n), in newton_schulz's operations and precision."""
    X = G.to(dtype)
    tall = G.size(-2) > G.size(-1)
    if tall:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) * 1.02 + 1e-6)  # their cushion on the spectral norm's bound
    for a, b, c in POLAR_EXPRESS[:k]:
        A = X @ X.mT
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)
        X = torch.baddbmm(X, B, X, beta=a)
    return X.mT if tall else X


# ... and sides that undo one of the CPU path's choices, which no flag turns off (see without())


@contextmanager
def without(side: str):
    """While the side's step is built and run: the CPU path without oneDNN's Linear (minigpt-mkl), or
    with torch's own dropout (minigpt-torch-dropout), or Muon's iteration replaced (minigpt-peK, -nsK)."""
    import minigpt.layers
    import minigpt.optim
    import minigpt.trainer

    saved = minigpt.trainer.onednn_matmul_rule, minigpt.layers.DropoutMasks.usable
    saved_ns = minigpt.optim.newton_schulz
    if m := re.fullmatch(r"minigpt-(pe|ns)(\d)", side):
        k = int(m.group(2))
        if m.group(1) == "pe":
            minigpt.optim.newton_schulz = lambda G, coefficients, steps, eps, dtype=torch.bfloat16: polar_express(
                G, k, dtype
            )
        else:
            minigpt.optim.newton_schulz = lambda G, coefficients, steps, eps, dtype=torch.bfloat16: saved_ns(
                G, coefficients, k, eps, dtype
            )
    if side == "minigpt-mkl":
        minigpt.trainer.onednn_matmul_rule = lambda: (False, "bench: without oneDNN")
    if side == "minigpt-torch-dropout":
        minigpt.layers.DropoutMasks.usable = lambda self, x: False
    try:
        yield
    finally:
        minigpt.trainer.onednn_matmul_rule, minigpt.layers.DropoutMasks.usable = saved
        minigpt.optim.newton_schulz = saved_ns


def bf16_somewhere(cfg: TrainConfig) -> bool:
    """Whether minigpt-train's rules pick bf16 on this CPU for the model or Muon's iteration at this shape."""
    cpu = torch.device("cpu")
    return torch.bfloat16 in (resolve_dtype("auto", cpu, cfg.n_embd)[0], muon_dtype("auto", cpu, cfg.n_embd)[0])


def shape_config(shape: str, **overrides) -> TrainConfig:
    """A shape's configuration; NAME@P: the shape at dropout P for every side (laptop@0: nanoGPT's CPU
    recipe has no dropout, and there torch's CPU dropout no longer slows the baseline's step)."""
    name, _, dropout = shape.partition("@")
    if name not in SHAPES:
        raise SystemExit(f"--shapes {shape}: choose of {', '.join(SHAPES)} (NAME@P for dropout P)")
    spec = dict(SHAPES[name]) | ({"dropout": float(dropout)} if dropout else {})
    return make_config(spec.pop("preset"), device="cpu", **spec, **overrides)


# ---- the baseline: nanoGPT's model.py, as written ----


NANOGPT = dict(betas=(0.9, 0.99), weight_decay=0.1, grad_clip=1.0)  # config/train_shakespeare_char.py, train.py


class Block(nn.Module):
    def __init__(self, C: int, n_head: int, dropout: float):
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.ln_1, self.ln_2 = nn.LayerNorm(C, bias=False), nn.LayerNorm(C, bias=False)  # train.py: bias = False
        self.c_attn, self.attn_proj = nn.Linear(C, 3 * C, bias=False), nn.Linear(C, C, bias=False)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C, bias=False), nn.Linear(4 * C, C, bias=False)
        self.drop = nn.Dropout(dropout)

    def attn(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.drop(self.attn_proj(y.transpose(1, 2).contiguous().view(B, T, C)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.drop(self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)))))


class BaselineGPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int, dropout: float):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab_size, n_embd), nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=False)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / (2 * n_layer) ** 0.5 if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor):
        B, T = idx.shape
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def get_batch(data_path: Path, dtype, B: int, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """nanoGPT's train.py get_batch on a CPU: the memmap opened again at every call (its guard against a
    memory leak), B uniform offsets from torch's global generator, rows stacked and cast to int64."""
    data = np.memmap(data_path, dtype=dtype, mode="r")
    ix = torch.randint(len(data) - T, (B,))
    x = torch.stack([torch.from_numpy(data[i : i + T].astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + T].astype(np.int64)) for i in ix])
    return x, y


def nanogpt_lr(it: int, lr: float, n: int) -> float:
    """nanoGPT's get_lr for a run of n steps: linear warmup over n/20 (its 100 of 2,000), cosine to lr/10."""
    warmup, min_lr = max(round(n / 20), 1), lr / 10
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    ratio = (it - warmup) / max(n - warmup, 1)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * min(ratio, 1.0))) * (lr - min_lr)


def baseline_step(cfg: TrainConfig, dataset: TokenData):
    """The baseline's step (its lr set per call, as both loops set it; its batches drawn by get_batch
    inside the step) and its optimizers, and the mean loss over the validation windows minigpt-train
    evaluates at this config."""
    vocab_size = dataset.manifest["vocab_size"]
    torch.manual_seed(cfg.seed)
    model = BaselineGPT(vocab_size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.dropout)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(  # not fused: train.py asks for fused only on CUDA
        [{"params": decay, "weight_decay": NANOGPT["weight_decay"]}, {"params": rest, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=NANOGPT["betas"],
    )
    shard = dataset.folder / dataset.manifest["splits"]["train"]["shards"][0]["file"]

    def step(lr: float, step: int) -> torch.Tensor:
        for group in opt.param_groups:
            group["lr"] = lr
        for _ in range(cfg.grad_accum):
            x, y = get_batch(shard, dataset.dtype, cfg.batch_size, cfg.block_size)
            _, loss = model(x, y)
            (loss / cfg.grad_accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), NANOGPT["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    windows = dataset.eval_windows("val", cfg.block_size, cfg.eval_tokens, cfg.seed)

    def evaluate() -> float:
        model.eval()
        total = 0.0
        with torch.no_grad():
            for batch in dataset.eval_batches("val", windows, 64, cfg.block_size):
                t = torch.from_numpy(batch)
                total += model(t[:, :-1], t[:, 1:])[1].item() * len(batch)
        model.train()
        return total / len(windows)

    return step, [opt], evaluate


def minigpt_step(cfg: TrainConfig, data: Path, out: Path):
    """minigpt-train's step for cfg, built by the trainer itself (a run folder is written under out)."""
    from minigpt.distributed import Dist
    from minigpt.trainer import Trainer

    trainer = Trainer(cfg, Dist(), torch.device("cpu"), say=lambda *_: None, on_row=None)
    trainer.open(data, out, resume=False, force=True, verify_data=False)
    trainer.prepare_step()

    def step(lr: float, step: int) -> torch.Tensor:  # as Trainer.loop draws and calls it
        batches = [trainer.dataset.batch(cfg.seed, step, m, cfg.batch_size, cfg.block_size) for m in trainer.micros]
        return trainer.train_step(batches, lr, [(cfg.seed, step, m) for m in trainer.micros])

    return step, trainer.optimizers, lambda: trainer.evaluate("val")


def timed_optimizers(optimizers: list, spent: list) -> None:
    """Each optimizer's step() adds its seconds to spent[0] (the CPU runs it synchronously)."""
    for opt in optimizers:
        inner = opt.step

        def step(*args, _inner=inner, **kwargs):
            t = time.perf_counter()
            try:
                return _inner(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t

        opt.step = step


class Side:
    """One side's step at one shape, built and warmed up, timed a turn at a time."""

    def __init__(self, name: str, shape: str, folder: Path, dataset: TokenData, tmp: Path, warmup: int):
        self.name, self.dataset = name, dataset
        self.cfg = cfg = shape_config(shape, **SIDES.get(name, {}))
        started = time.perf_counter()  # the build (and a compile) and the warm-up steps
        if name == "baseline":
            self.step, optimizers, _ = baseline_step(cfg, dataset)
        else:
            with without(name):
                self.step, optimizers, _ = minigpt_step(cfg, folder, tmp / name)
        self.spent, self.s = [0.0], 0
        timed_optimizers(optimizers, self.spent)
        self.ms, self.opt_ms, self.faults = [], [], 0
        self.turn(warmup)
        self.setup_s = time.perf_counter() - started
        self.ms, self.opt_ms, self.faults = [], [], 0

    def turn(self, n: int) -> None:
        with without(self.name):
            self._turn(n)

    def _turn(self, n: int) -> None:
        cfg, f0 = self.cfg, resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(n):
            self.spent[0] = 0.0
            t = time.perf_counter()
            self.loss = self.step(cfg.lr, self.s)
            self.ms.append((time.perf_counter() - t) * 1e3)
            self.opt_ms.append(self.spent[0] * 1e3)
            self.s += 1
        self.faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0


def child(args) -> None:
    """Every side at one shape in this process, built one after another, then taking turns of
    --turn-steps steps, the order reversed every round (A B C, C B A, ...): the machine's slow and fast
    spells fall on all of them. One JSON line: each side's step times."""
    if args.keep_freed_memory:
        from minigpt.device import keep_freed_memory

        keep_freed_memory()
    folder, _ = find_dataset(args.data)
    dataset = TokenData(folder)
    with tempfile.TemporaryDirectory() as tmp:
        sides = [Side(name, args.shape, folder, dataset, Path(tmp), args.warmup) for name in args.sides.split(",")]
        for r in range(args.turns):
            for side in sides if r % 2 == 0 else sides[::-1]:
                side.turn(args.turn_steps)
    print(
        json.dumps(
            {
                side.name: {
                    "ms": side.ms,
                    "opt_ms": side.opt_ms,
                    "faults": side.faults,
                    "setup_s": side.setup_s,
                    "tokens_per_step": side.cfg.tokens_per_step,
                    "loss": float(side.loss),
                }
                for side in sides
            }
        )
    )


BASE_LRS = "3.16e-4,1e-3,3.16e-3,1e-2"  # --learn: the baseline's peak rates (AdamW), half a decade apart
LEARN_EVALS = 20  # --learn: validation losses per run


class Learner:
    """--learn: one side trained for cfg.max_iters steps on its own schedule (minigpt-train's lr_at, or
    the baseline's nanogpt_lr), each
    step timed, the validation loss (minigpt-train's fixed windows) every `every` steps, untimed."""

    def __init__(self, name: str, cfg: TrainConfig, folder: Path, dataset: TokenData, tmp: Path):
        self.name, self.cfg, self.dataset, self.s, self.ms, self.curve = name, cfg, dataset, 0, [], []
        if name.startswith("baseline"):
            self.step, _, self.evaluate = baseline_step(cfg, dataset)
        else:
            with without(name):
                self.step, _, self.evaluate = minigpt_step(cfg, folder, tmp / name)

    def advance(self, every: int) -> None:
        cfg = self.cfg
        base = self.name.startswith("baseline")
        lr = nanogpt_lr(self.s, cfg.lr, cfg.max_iters) if base else lr_at(self.s, cfg)
        with without(self.name), torch.random.fork_rng(devices=[]):  # the baseline's draws: whatever runs beside it
            torch.manual_seed(cfg.seed + 1_000_003 * (self.s + 1))
            t = time.perf_counter()
            self.step(lr, self.s)
            self.ms.append((time.perf_counter() - t) * 1e3)
        self.s += 1
        if self.s % every == 0 or self.s == cfg.max_iters:
            self.curve.append((self.s, round(self.evaluate(), 5)))


def learn_child(args) -> None:
    """--learn in one process: minigpt's default recipe (and its fp32 twin where a rule picks bf16) and
    the baseline at each of --base-lrs on nanoGPT's schedule and batch draw; they take a step each in turn, the order reversed every round,
    so their ms/step are side by side. One JSON line: each side's step times and validation curve."""
    from minigpt.device import keep_freed_memory

    keep_freed_memory()  # minigpt-train's malloc setting, for every side
    folder, _ = find_dataset(args.data)
    dataset, n = TokenData(folder), args.learn
    run = dict(max_iters=n, eval_tokens=args.learn_eval_tokens, seed=args.seed)
    sides = {"minigpt": shape_config(args.shape, **run)}
    if bf16_somewhere(sides["minigpt"]):
        sides["minigpt-no-bf16"] = shape_config(args.shape, **run, **SIDES["minigpt-no-bf16"])
    for name in args.sides.split(",") if args.sides else []:  # minigpt's variants beside its default
        sides[name] = shape_config(args.shape, **run, **SIDES[name])
    for lr in args.base_lrs.split(","):
        sides[f"baseline lr {lr}"] = shape_config(args.shape, **run, lr=float(lr))
    with tempfile.TemporaryDirectory() as tmp:
        learners = [Learner(name, c, folder, dataset, Path(tmp)) for name, c in sides.items()]
        for r in range(n):
            for one in learners if r % 2 == 0 else learners[::-1]:
                one.advance(max(n // LEARN_EVALS, 1))
    print(
        json.dumps(
            {
                one.name: {
                    "ms": one.ms,
                    "curve": one.curve,
                    "lr": one.cfg.lr,
                    "warmup": one.cfg.warmup_iters,
                    "tokens_per_step": one.cfg.tokens_per_step,
                }
                for one in learners
            }
        )
    )


def steps_to(curve: list, loss: float) -> float | None:
    """The first step at which a validation curve reaches loss, linear between its evaluations."""
    prev = (0, float("inf"))
    for step, val in curve:
        if val <= loss:
            if prev[1] == float("inf"):
                return float(step)
            return prev[0] + (step - prev[0]) * (prev[1] - loss) / (prev[1] - val)
        prev = (step, val)
    return None


def learn_summary(sides: dict) -> dict:
    """The baseline's best rate; each minigpt side's validation loss at equal steps, and its time to the
    baseline's final loss (its steps to it x its median ms/step) against the baseline's (all its steps x
    its median ms/step, measured turn by turn with minigpt's)."""
    base = {k: v for k, v in sides.items() if k.startswith("baseline")}
    best = min(base, key=lambda k: base[k]["curve"][-1][1])
    lrs = sorted(float(v["lr"]) for v in base.values())
    b, n = base[best], base[best]["curve"][-1][0]
    b_ms = statistics.median(b["ms"])
    out = {
        "steps": n,
        "baseline": {k: {"lr": v["lr"], "val_loss": v["curve"][-1][1]} for k, v in base.items()},
        "baseline_best": {
            "lr": b["lr"],
            "val_loss": b["curve"][-1][1],
            "ms_per_step": round(b_ms, 2),
            "at_grid_edge": b["lr"] in (lrs[0], lrs[-1]),
            "curve": b["curve"],
        },
    }
    for name, side in sides.items():
        if name in base:
            continue
        ms, reach = statistics.median(side["ms"]), steps_to(side["curve"], b["curve"][-1][1])
        out[name] = {
            "lr": side["lr"],
            "val_loss": side["curve"][-1][1],
            "ms_per_step": round(ms, 2),
            "x_baseline_tokens_per_s": round(b_ms / ms, 3),
            "curve": side["curve"],
            "steps_to_baseline_loss": None if reach is None else round(reach, 1),
            "x_baseline_time_to_its_loss": None if reach is None else round(n * b_ms / (reach * ms), 2),
        }
    return out


def learn(shape: str, args) -> dict:
    table = learn_summary(
        run_child(
            shape,
            [
                "--learn",
                str(args.learn),
                "--base-lrs",
                args.base_lrs,
                "--learn-eval-tokens",
                str(args.learn_eval_tokens),
                "--data",
                str(args.data),
                *(["--sides", args.sides] if args.sides else []),
                "--seed",
                str(args.seed),
            ],
            timeout=7200,
        )
    )
    cfg, best = shape_config(shape), table["baseline_best"]
    print(
        f"{shape}: {cfg.n_layer} layers x {cfg.n_embd}, block {cfg.block_size}, batch {cfg.batch_size}, dropout "
        f"{cfg.dropout}, {table['steps']} steps, dataset {args.data.name}",
        file=sys.stderr,
    )
    for name, row in table["baseline"].items():
        print(f"  {name:22} val {row['val_loss']:.4f}", file=sys.stderr)
    edge = "  (at the grid's edge: widen --base-lrs)" if best["at_grid_edge"] else ""
    print(
        f"  baseline's best: lr {best['lr']:g}, val {best['val_loss']:.4f}, {best['ms_per_step']:.2f} ms/step{edge}",
        file=sys.stderr,
    )
    for name, row in table.items():
        if name.startswith("minigpt"):
            reach = (
                (
                    f"reaches the baseline's {best['val_loss']:.4f} at step {row['steps_to_baseline_loss']:.0f}: "
                    f"{row['x_baseline_time_to_its_loss']:.2f}x as fast to it"
                )
                if row["steps_to_baseline_loss"]
                else "never reaches the baseline's loss"
            )
            print(
                f"  {name:22} lr {row['lr']:g}, val {row['val_loss']:.4f}, {row['ms_per_step']:.2f} ms/step "
                f"({row['x_baseline_tokens_per_s']:.2f}x the tokens/s); {reach}",
                file=sys.stderr,
            )
    return table


def measure(
    shape: str, sides: list[str], args, warmup: int, turns: int, turn_steps: int, keep_freed_memory: bool = False
) -> dict:
    """One fresh process for the shape (child()). Where a minigpt side is built, the process carries
    minigpt-train's malloc setting (cpu.keep_freed_memory) for every side, the baseline included; a
    baseline alone gets glibc's defaults unless keep_freed_memory asks for the setting."""
    flags = [
        "--sides",
        ",".join(sides),
        "--warmup",
        str(warmup),
        "--turns",
        str(turns),
        "--turn-steps",
        str(turn_steps),
    ]
    flags += (["--data", str(args.data)] if args.data else []) + (["--keep-freed-memory"] if keep_freed_memory else [])
    return run_child(shape, flags, timeout=3600)


def run_child(shape: str, flags: list[str], timeout: int) -> dict:
    """This script in a fresh process for the shape (child() or learn_child()): the JSON line it prints last."""
    p = subprocess.run(
        [sys.executable, __file__, "--child", "--shape", shape, *flags], capture_output=True, text=True, timeout=timeout
    )
    if p.returncode != 0:
        raise SystemExit(f"the {shape} process failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def summarize(sides: dict, turn_steps: int) -> dict:
    """Per side: medians over every timed step; against the baseline, the ratio of those medians and its
    spread over the turns (a turn of each side ran within a fraction of a second of the other's)."""
    table = {}
    for name, side in sides.items():
        med = statistics.median(side["ms"])
        turns = [statistics.median(side["ms"][i : i + turn_steps]) for i in range(0, len(side["ms"]), turn_steps)]
        table[name] = {
            "ms_per_step": round(med, 2),
            "tokens_per_s": round(side["tokens_per_step"] / med * 1e3, 1),
            "optimizer_share": round(statistics.median(side["opt_ms"]) / med, 4),
            "faults_per_step": round(side["faults"] / len(side["ms"]), 1),
            "setup_s": round(side["setup_s"], 2),
            "turn_ms": [round(t, 2) for t in turns],
        }
    base = table["baseline"]
    for name, row in table.items():
        if name != "baseline":
            per_turn = sorted(b / m for b, m in zip(base["turn_ms"], row["turn_ms"]))
            row["x_baseline"] = round(base["ms_per_step"] / row["ms_per_step"], 3)
            row["x_baseline_turns"] = {
                "min": round(per_turn[0], 3),
                "median": round(statistics.median(per_turn), 3),
                "max": round(per_turn[-1], 3),
            }
    return table


def cli_runs(args, n: int) -> list[dict]:
    """`python train.py --preset tiny` on the dataset, whole, n times: wall and training seconds."""
    out = []
    for _ in range(n):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, str(ROOT / "train.py"), "--preset", "tiny", "--out", str(Path(tmp) / "run")]
            cmd += ["--data", str(args.data)] if args.data else []
            t = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            wall = time.perf_counter() - t
        m = re.search(r"tokens in ([\d.]+) s(?: \(evaluation and checkpoints ([\d.]+) s\))?", p.stdout)
        if p.returncode != 0 or not m:
            raise SystemExit(f"train.py --preset tiny failed:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
        out.append(
            {
                "wall_s": round(wall, 2),
                "training_s": float(m.group(1)),
                "eval_s": float(m.group(2)) if m.group(2) else None,
            }
        )
    return out


def ns_bench(widths: list[int], layers: int, repeats: int) -> list[dict]:
    """Muon's Newton-Schulz iteration over one model's block matrices, bf16 against fp32, taking turns."""
    from minigpt.optim import newton_schulz

    rows = []
    for C in widths:
        mats = [
            torch.randn(layers, 3 * C, C),
            torch.randn(layers, C, C),
            torch.randn(layers, 4 * C, C),
            torch.randn(layers, C, 4 * C),
        ]  # qkv, attention out, MLP in, MLP out: one stack per shape
        times = {torch.bfloat16: [], torch.float32: []}
        for r in range(repeats + 2):
            for dtype in times:
                t = time.perf_counter()
                for m in mats:
                    newton_schulz(m, (3.4445, -4.7750, 2.0315), 5, 1e-7, dtype)
                if r >= 2:
                    times[dtype].append(time.perf_counter() - t)
        bf, fp = (statistics.median(times[d]) * 1e3 for d in (torch.bfloat16, torch.float32))
        rows.append(
            {
                "n_embd": C,
                "layers": layers,
                "bf16_ms": round(bf, 3),
                "fp32_ms": round(fp, 3),
                "fp32_over_bf16": round(fp / bf, 2),
            }
        )
        print(
            f"n_embd {C:4}, {layers} layers: Newton-Schulz bf16 {bf:8.2f} ms, fp32 {fp:8.2f} ms, "
            f"bf16 {fp / bf:.2f}x as fast",
            file=sys.stderr,
        )
    return rows


def paired(fns: dict, repeats: int = 30, inner: int = 5) -> dict:
    """Median microseconds of each function, taking turns (after a warm-up of each)."""
    times = {name: [] for name in fns}
    for r in range(repeats + 2):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            if r >= 2:
                times[name].append((time.perf_counter() - t) / inner * 1e6)
    return {name: round(statistics.median(ts), 1) for name, ts in times.items()}


def kernels_bench(args) -> dict:
    """The pieces minigpt's CPU step replaced, each against what it replaced, at the laptop shape
    (4 layers x 128, block 64, batch 12, dropout 0.2); then page faults of the baseline's step with
    glibc's defaults and with cpu.keep_freed_memory, each in a fresh process."""
    from minigpt.kernels import _product, onednn_usable
    from minigpt.layers import DropoutMasks, relu_squared
    from minigpt.model import CausalSelfAttention, GPTConfig

    torch.manual_seed(0)
    B, T, C, p = 12, 64, 128, 0.2
    out = {}
    x = torch.randn(B, T, C, requires_grad=True)
    masks = DropoutMasks()
    masks.key(1, 0, 0)

    def dropout_torch():
        F.dropout(x, p, True).sum().backward()

    def dropout_keyed():
        masks.drop(x, p).sum().backward()

    out["dropout_fwd_bwd_us (12, 64, 128)"] = paired({"torch": dropout_torch, "keyed": dropout_keyed})
    attn = CausalSelfAttention(GPTConfig(vocab_size=100, n_embd=C, n_head=4, dropout=p)).train()
    attn.masks = masks
    q, k, v = (torch.randn(B, 4, T, C // 4, requires_grad=True) for _ in range(3))

    def sdpa_dropout():
        F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True).sum().backward()

    def keyed_attention():
        attn.keyed_dropout_attention(q, k, v).sum().backward()

    def sdpa_no_dropout():
        F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()

    out["attention_fwd_bwd_us (12, 4, 64, 32)"] = paired(
        {
            "sdpa dropout 0.2": sdpa_dropout,
            "written out, keyed dropout 0.2": keyed_attention,
            "sdpa without dropout": sdpa_no_dropout,
        }
    )
    h = torch.randn(B, T, 4 * C, requires_grad=True)
    g = torch.randn(B, T, 4 * C)
    out["relu2_fwd_bwd_us (12, 64, 512)"] = paired(
        {
            "relu().square()": lambda: torch.relu(h).square().backward(g),
            "relu_squared": lambda: relu_squared(h).backward(g),
        }
    )
    if onednn_usable():
        for n_in, n_out in ((C, 3 * C), (C, 4 * C), (4 * C, C)):
            a, w = torch.randn(B * T, n_in), torch.randn(n_out, n_in)
            gflop = 2 * B * T * n_in * n_out / 1e3  # per microsecond
            us = paired({"MKL": lambda: F.linear(a, w), "oneDNN": lambda: _product(a, w)})
            out[f"linear_gflops ({B * T}, {n_in}) x ({n_in}, {n_out})"] = {
                k: round(gflop / v, 1) for k, v in us.items()
            }
    for keep in (False, True):
        row = measure("laptop", ["baseline"], args, warmup=5, turns=20, turn_steps=1, keep_freed_memory=keep)[
            "baseline"
        ]
        out[f"baseline faults/step, laptop, {'keep_freed_memory' if keep else 'glibc defaults'}"] = round(
            row["faults"] / len(row["ms"]), 1
        )
    for name, row in out.items():
        print(f"{name}: {row}", file=sys.stderr)
    return out


def host() -> dict:
    return {
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="dataset folder (default: the newest under data/)")
    ap.add_argument("--shapes", default="tiny,laptop", help=f"comma-separated, of {', '.join(SHAPES)}")
    ap.add_argument("--turns", type=int, default=60, help="turns per side and shape")
    ap.add_argument("--turn-steps", type=int, default=1, help="timed steps per turn")
    ap.add_argument("--warmup", type=int, default=8, help="untimed steps first")
    ap.add_argument(
        "--sides",
        help=f"comma-separated, of {', '.join(SIDES)} and baseline (default: minigpt, "
        "minigpt-no-bf16 where a rule picks bf16, baseline; with --learn, minigpt's variants trained beside those)",
    )
    ap.add_argument("--cli", type=int, default=0, metavar="N", help="also time `train.py --preset tiny` whole, N times")
    ap.add_argument("--ns", action="store_true", help="only Muon's iteration, bf16 against fp32, at --ns-widths")
    ap.add_argument("--ns-widths", default="64,96,128,192,384")
    ap.add_argument(
        "--kernels", action="store_true", help="only the CPU step's replaced pieces against what they replaced"
    )
    ap.add_argument(
        "--learn",
        type=int,
        default=0,
        metavar="STEPS",
        help="instead: train each side STEPS steps (the baseline at each of --base-lrs), validation loss against time",
    )
    ap.add_argument("--base-lrs", default=BASE_LRS, help="--learn: the baseline's peak learning rates")
    ap.add_argument("--learn-eval-tokens", type=int, default=32_768, help="--learn: validation tokens per evaluation")
    ap.add_argument("--seed", type=int, default=1337, help="--learn: every side's seed (init, batches, dropout)")
    ap.add_argument("--keep-freed-memory", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return learn_child(args) if args.learn else child(args)

    info = host()
    print(
        f"{info['cpu']} ({info['machine']}, {info['cores']} cores; flags: {' '.join(info['cpu_flags'])}), "
        f"torch {info['torch']} with {info['threads']} threads, {info['date']}",
        file=sys.stderr,
    )
    result = {"bench": "cpu", **info}
    if args.ns:
        result["newton_schulz"] = ns_bench([int(w) for w in args.ns_widths.split(",")], 4, 15)
    elif args.kernels:
        result["kernels"] = kernels_bench(args)
    elif args.learn:
        args.data = find_dataset(args.data)[0]
        result.update(dataset=args.data.name, learn={shape: learn(shape, args) for shape in args.shapes.split(",")})
    else:
        shapes = args.shapes.split(",")
        folder, _ = find_dataset(args.data)
        args.data = folder
        sides = args.sides.split(",") if args.sides else ["minigpt", "baseline"]
        if not args.sides and any(bf16_somewhere(shape_config(s)) for s in shapes):
            sides.insert(1, "minigpt-no-bf16")  # what a CPU without bf16 instructions runs
        table = {}
        for shape in shapes:
            table[shape] = summarize(
                measure(shape, sides, args, args.warmup, args.turns, args.turn_steps), args.turn_steps
            )
            cfg = shape_config(shape)
            print(
                f"{shape}: {cfg.n_layer} layers x {cfg.n_embd}, {cfg.n_head} heads, block {cfg.block_size}, batch "
                f"{cfg.batch_size}, dropout {cfg.dropout}, dataset {folder.name}",
                file=sys.stderr,
            )
            for side in sides:
                row = table[shape][side]
                turns = row.get("x_baseline_turns", {})
                extra = (
                    (
                        f"  {row['x_baseline']:.2f}x the baseline (turn by turn: median {turns['median']:.2f}, "
                        f"{turns['min']:.2f}-{turns['max']:.2f})"
                    )
                    if turns
                    else ""
                )
                print(
                    f"  {side:16} {row['ms_per_step']:8.2f} ms/step {row['tokens_per_s']:10,.0f} tok/s  optimizer "
                    f"{row['optimizer_share']:5.1%}  {row['faults_per_step']:5.0f} faults/step  set-up "
                    f"{row['setup_s']:.1f} s{extra}",
                    file=sys.stderr,
                )
        result.update(dataset=folder.name, turns=args.turns, turn_steps=args.turn_steps, shapes=table)
        if args.cli:
            runs = cli_runs(args, args.cli)
            result["cli_tiny"] = runs
            print(
                f"train.py --preset tiny, whole: training {[r['training_s'] for r in runs]} s, evaluation and "
                f"checkpoints {[r['eval_s'] for r in runs]} s, wall {[r['wall_s'] for r in runs]} s",
                file=sys.stderr,
            )
    print(json.dumps(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
