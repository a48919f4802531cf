"""Training configurations: the presets, and one dataclass that every flag can override.

`seed` is the old gpt.py's best config and the default; `A`, `B` and `C` are the larger variants it
tried (B and C reach their batch of 128 and 256 sequences through gradient accumulation); `tiny`
trains in seconds on a CPU, for trying things and for the tests.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from .errors import UserError


# The values each choice field takes (GPTConfig checks the model's three against the same lists).
CHOICES = {
    "dtype": ("auto", "float32", "bfloat16", "float16"),
    "init": ("gpt2", "zero", "torch"),
    "mlp": ("gelu", "relu2"),
    "pos": ("learned", "rope"),
    "optimizer": ("adamw", "muon"),
    "schedule": ("cosine", "wsd", "constant"),
    "muon_dtype": ("auto", "bfloat16", "float32"),
}


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "seed"
    # model
    n_layer: int = 8
    n_head: int = 8
    n_embd: int = 384
    block_size: int = 64
    dropout: float = 0.2
    bias: bool = False  # biases in Linear and LayerNorm layers (none: better in BENCHMARKS.md's ablation)
    tie_weights: bool = True  # the output head shares the token embedding
    init: str = "gpt2"  # gpt2, zero (residual projections start at 0) or torch (PyTorch's defaults)
    mlp: str = "relu2"  # relu2 (ReLU squared) or gelu
    pos: str = "rope"  # rope (rotary), or learned position embeddings
    qk_norm: bool = True  # RMS-normalise queries and keys
    # optimisation
    batch_size: int = 128  # sequences per micro-step
    grad_accum: int = 1  # micro-steps per optimizer step
    max_iters: int = 5000
    lr: float = 3e-4
    lr_from: str = (
        "preset"  # where lr came from: preset (its table), rule (lr_rule, for a shape given by flags) or flag
    )
    min_lr: float | None = None  # end of the cosine decay; None: lr / 10
    warmup_iters: int = 20  # linear warmup from 0 (Muon needs little)
    weight_decay: float = 0.1  # on 2-D weights only
    optimizer: str = "muon"  # muon: Muon for the blocks' matrices, AdamW for the rest; or adamw for all
    muon_dtype: str = (
        "auto"  # Muon's Newton-Schulz iteration: auto (device.muon_dtype: bf16 where it is fast), bfloat16, float32
    )
    schedule: str = "cosine"  # after warmup: cosine to min_lr, wsd (flat, then linear over the last 20%), constant
    beta2: float = 0.95  # AdamW's second-moment decay
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    # evaluation and logging
    eval_interval: int = 250  # evaluate and checkpoint every this many steps (and at the end)
    eval_tokens: int = 1_000_000  # fixed budget of validation (and train) tokens per evaluation; 0: the whole split
    eval_tokens_from: str = "preset"  # preset (its table, or this default), rule (eval_rule, on a CPU) or flag
    log_interval: int = 10
    # reproducibility and hardware
    seed: int = 1337
    device: str = "auto"  # auto: cuda, then mps, then cpu
    dtype: str = "auto"  # auto: device.resolve_dtype's rule (bf16 autocast on CUDA and on CPUs with bf16 instructions)
    compile: bool | None = None  # None: on for CUDA, off for CPU and MPS
    cuda_graphs: bool = True  # on CUDA, in one process, in bf16 or fp32: the whole step replayed as one CUDA graph

    @property
    def final_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum * self.block_size

    def to_json(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        positive = (
            "n_layer",
            "n_head",
            "n_embd",
            "block_size",
            "batch_size",
            "grad_accum",
            "max_iters",
            "eval_interval",
            "log_interval",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if self.n_embd % self.n_head:
            raise UserError(
                f"--n-embd {self.n_embd} is not divisible by --n-head {self.n_head}",
                f"each head gets n_embd / n_head dimensions; try --n-head {_divisor_near(self.n_embd, self.n_head)}",
            )
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"--dropout must be in [0, 1) (got {self.dropout})")
        if self.lr <= 0 or self.final_lr < 0 or self.final_lr > self.lr:
            raise UserError(
                f"learning rates must satisfy 0 <= --min-lr <= --lr and --lr > 0 "
                f"(got --lr {self.lr}, --min-lr {self.final_lr})"
            )
        if self.warmup_iters < 0 or self.weight_decay < 0 or self.grad_clip < 0 or self.eval_tokens < 0:
            raise UserError("--warmup-iters, --weight-decay, --grad-clip and --eval-tokens cannot be negative")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)}: choose {', '.join(allowed)}")
        if not 0 < self.beta2 < 1:
            raise UserError(f"--beta2 must be in (0, 1) (got {self.beta2})")


def _divisor_near(n: int, k: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - k), d))


PRESETS: dict[str, dict] = {
    "seed": {},  # the dataclass defaults: gpt.py's best config
    "A": dict(n_embd=768, n_head=12, n_layer=12, block_size=128, batch_size=64, lr=3e-5, dropout=0.2),
    "B": dict(n_embd=768, n_head=12, n_layer=18, block_size=512, batch_size=16, grad_accum=8, lr=3e-4, dropout=0.1),
    "C": dict(n_embd=768, n_head=12, n_layer=24, block_size=1024, batch_size=32, grad_accum=8, lr=6e-4, dropout=0.1),
    "tiny": dict(
        n_embd=64,
        n_head=4,
        n_layer=2,
        block_size=32,
        batch_size=16,
        max_iters=200,
        lr=1e-2,
        warmup_iters=10,
        eval_interval=50,
        eval_tokens=16_384,
        dropout=0.0,
        log_interval=10,
    ),
}
FIELDS = {f.name for f in fields(TrainConfig)}
LR_RULE_WIDTH = 128  # lr_rule: the width from which the best rate of the sweeps stayed at 3.16e-3
MODEL_FIELDS = (
    "block_size",
    "n_layer",
    "n_head",
    "n_embd",
    "dropout",
    "bias",
    "tie_weights",
    "init",
    "mlp",
    "pos",
    "qk_norm",
)  # the TrainConfig fields that make the GPTConfig


def make_config(preset: str, **overrides) -> TrainConfig:
    """The preset, then every override that is not None. The learning rate: --lr where given; else the
    preset's where the shape and batch are the preset's; else lr_rule's for the shape and batch given."""
    if preset not in PRESETS:
        raise UserError(f"--preset {preset}: no such preset", f"choose one of {', '.join(PRESETS)}")
    unknown = set(overrides) - FIELDS
    if unknown:
        raise TypeError(f"unknown config fields: {sorted(unknown)}")
    base = replace(TrainConfig(preset=preset), **PRESETS[preset])
    given = {k: v for k, v in overrides.items() if v is not None and k not in ("lr_from", "eval_tokens_from")}
    cfg = replace(base, **given)
    if "eval_tokens" in given:
        cfg = replace(cfg, eval_tokens_from="flag")
    if "lr" in given:
        cfg = replace(cfg, lr_from="flag")
    elif any(getattr(cfg, k) != getattr(base, k) for k in RULE_FIELDS):
        cfg = replace(cfg, lr=lr_rule(cfg), lr_from="rule")
    cfg.check()
    return cfg


RULE_FIELDS = ("n_layer", "n_embd", "block_size", "batch_size", "grad_accum")  # what lr_rule reads


def lr_rule(cfg: TrainConfig) -> float:
    """The peak learning rate for a shape and batch given by flags, fitted to the CPU sweeps of the
    default recipe (bench/lr_sweep.py, BENCHMARKS.md): 10^-2.5 from LR_RULE_WIDTH wide up, where the best
    of the half-decade grid was 3.16e-3 at 128, 192 and 384 wide, at batches of 768 and 2,048 tokens
    (Muon's update is scaled to AdamW's RMS, which keeps the best rate about flat in width); half a decade
    higher per halving of the width below that (1e-2 at 64 wide, the tiny preset's best). Depth, block
    size and batch moved the best by less than the grid's step, so they do not enter."""
    halvings = max(math.log2(LR_RULE_WIDTH / cfg.n_embd), 0.0)
    return float(f"{10 ** (-2.5 + 0.5 * halvings):.3g}")


# Evaluation batches on the CPU, uncompiled: at least this many windows (the forward pass alone runs faster
# per token at 64 windows than at the tiny preset's 16 or a laptop's 12: BENCHMARKS.md)
CPU_EVAL_BATCH = 64
EVAL_SHARE = 0.1  # the CPU rule: every evaluation of a run together, at most this share of its time
# a token evaluated (forward only, CPU_EVAL_BATCH windows a batch) over a token trained, in time (BENCHMARKS.md)
CPU_EVAL_COST = 0.25
MIN_EVAL_WINDOWS = CPU_EVAL_BATCH  # one evaluation batch: fewer windows make a figure of too little text


def eval_rule(cfg: TrainConfig) -> int:
    """The default --eval-tokens on a CPU, where evaluating the GPU default of 1,000,000 tokens of each split
    takes minutes: the most whole windows that keep the run's evaluations (each eval_interval steps and at
    the end, val and train) within EVAL_SHARE of its time, at least MIN_EVAL_WINDOWS, at most the default."""
    evals = -(-cfg.max_iters // cfg.eval_interval)
    trained = cfg.max_iters * cfg.tokens_per_step
    tokens = EVAL_SHARE / (1 - EVAL_SHARE) * trained / (CPU_EVAL_COST * 2 * evals)
    windows = min(max(int(tokens) // cfg.block_size, MIN_EVAL_WINDOWS), TrainConfig.eval_tokens // cfg.block_size)
    return windows * cfg.block_size


def eval_origin(cfg: TrainConfig, val_tokens: int) -> str:
    """The evaluation budget and where it came from, in words, for the start-up line; a val split smaller
    than the budget is scored whole (data/loader.py's windows), and said so."""
    if cfg.eval_tokens == 0:
        what = "the whole val split (and as many train tokens)"
    elif cfg.eval_tokens >= val_tokens:
        what = f"the whole val split ({val_tokens:,} tokens, under the budget) and {cfg.eval_tokens:,} tokens of train"
    else:
        what = f"{cfg.eval_tokens:,} tokens of val and of train"
    why = {
        "flag": "--eval-tokens",
        "rule": f"the CPU rule: at most ~{EVAL_SHARE:.0%} of the run's time; --eval-tokens N to choose",
        "preset": f"the {cfg.preset} preset's",
    }[cfg.eval_tokens_from]
    return f"evaluation every {cfg.eval_interval:,} steps and at the end: {what} ({why})"


def lr_origin(cfg: TrainConfig) -> str:
    """Where the run's lr came from, in words, for the start-up line."""
    if cfg.lr_from == "flag":
        return "--lr"
    if cfg.lr_from == "rule":
        return (
            f"the rule for a shape given by flags (3.16e-3 from {LR_RULE_WIDTH} wide up, half a decade more per "
            "halving below; fitted to lr sweeps, BENCHMARKS.md)"
        )
    return f"the {cfg.preset} preset's"
