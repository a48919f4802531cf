"""minigpt-train: the training loop over a prepared dataset, with exact resume.

Every source of randomness is keyed: batches by (seed, step, micro-step, rank) in data.py, weights by
the seed, dropout by torch's generator, whose state is saved in every checkpoint. So on the CPU the
same command gives the same metrics.jsonl (apart from timing fields), and a run stopped at any step
and resumed ends with byte-identical weights.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from .checkpoint import RUNS_DIR, RunFolder, versions
from .config import TrainConfig
from .data import TokenData, find_dataset, to_device
from .distributed import Dist, micro_batches, setup
from .errors import UserError, brief
from .model import GPT, GPTConfig
from .optim import lr_at, make_optimizers
from .step import GraphedForward, GraphedStep, Step

# Peak dense bf16 tensor FLOP/s (no sparsity) from the vendors' data sheets, for MFU.
PEAK_FLOPS = {"H200": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12,
              "L40S": 362e12, "A10G": 70e12, "L4": 121e12, "RTX 4090": 165e12, "RTX 3090": 71e12, "V100": 125e12}
EXIT_NAN = 3


@dataclass
class Result:
    run: Path
    step: int
    best_val_loss: float
    tokens: int
    seconds: float
    stopped_by: str | None = None  # "SIGTERM" / "SIGINT" when a signal ended the run early


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}, but this torch has no CUDA device available",
                        "use --device auto (or cpu); check `nvidia-smi` and that torch was installed with CUDA")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps, but MPS is not available here", "use --device auto (or cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device torch knows", "use auto, cpu, cuda, cuda:N or mps") from None


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32  # CPU and MPS: fp32, which is also what makes CPU runs exactly reproducible
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


class StopSignal:
    """SIGTERM and Ctrl-C set a flag; the loop checkpoints at the end of the step and stops."""

    def __init__(self):
        self.signum: int | None = None

    def __enter__(self):
        self._old = {s: signal.signal(s, self._set) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _set(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def train(cfg: TrainConfig, data: Path | None = None, out: Path | None = None, resume: bool = False,
          force: bool = False, verify_data: bool = False, say=print, on_row=None, backend: str = "auto",
          dist_timeout: float = 300.0) -> Result:
    """Train (or with resume, continue) a run; `say` gets notes and log lines, `on_row` every metrics row.
    Under torchrun, every rank calls this; rank 0 alone speaks and writes (see distributed.py)."""
    d, device = setup(resolve_device(cfg.device), backend, dist_timeout)
    if not d.main:
        say, on_row = (lambda *_: None), (lambda row: None)
    try:
        result = _train(cfg, d, device, data, out, resume, force, verify_data, say, on_row)
    except BaseException:
        d.close(clean=False)
        raise
    d.close(clean=True)
    return result


def _train(cfg: TrainConfig, d: Dist, device: torch.device, data, out, resume, force, verify_data, say, on_row) -> Result:
    folder, note = d.agree(lambda: find_dataset(data))
    if note:
        say(note)
    dataset = TokenData(folder, verify=verify_data)
    dataset.check_block_size(cfg.block_size)
    micros = micro_batches(cfg.grad_accum, d)
    dtype = resolve_dtype(cfg.dtype, device)
    run = RunFolder(out if out is not None else RUNS_DIR / f"{folder.name}-{cfg.preset}")
    model_cfg = GPTConfig.from_train(cfg, dataset.manifest["vocab_size"])
    config = {"model": model_cfg.to_json(), "train": cfg.to_json(),
              "dataset": {"folder": str(folder.resolve()), "manifest_sha256": dataset.manifest_sha256,
                          "vocab_sha256": dataset.manifest["vocab_sha256"]},
              "versions": versions()}

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = GPT(model_cfg).to(device)
    optimizers = make_optimizers(model, cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    step, best_val, tokens_seen = 0, float("inf"), 0
    if resume:
        state = d.agree(lambda: _resume(run, config))
        model.load_state_dict(state["model"])
        for opt, opt_state in zip(optimizers, state["optimizer"]):
            opt.load_state_dict(opt_state)
        scaler.load_state_dict(state["scaler"])
        step, best_val, tokens_seen = state["step"], state["best_val_loss"], state["tokens_seen"]
        if len(state["rng"]) == d.world_size:
            _set_rng(state["rng"][d.rank], device)
        else:
            say(f"the checkpoint was written by {len(state['rng'])} process(es), this run has {d.world_size}: "
                "the batches are the same, dropout masks start afresh")
            torch.manual_seed(cfg.seed + 1_000_003 * step + d.rank)
        if d.main:
            run.truncate_metrics(step)
        say(f"resuming {run.path} at step {step:,} of {cfg.max_iters:,}")
    else:
        d.agree(lambda: (_check_fresh(run, force), run.start(config, folder / "vocab.json")))
        if d.rank:
            torch.manual_seed(cfg.seed + d.rank)  # dropout masks of their own for the other ranks

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    # CUDA graphs: not under DDP (its hooks run between kernels), nor with fp16's scaler (it syncs every step)
    graphs = cfg.cuda_graphs and device.type == "cuda" and not d.enabled and dtype != torch.float16
    # autocast's cache of cast weights is kept out of graph capture, as torch's CUDA graph notes advise
    autocast = torch.autocast(device.type, dtype=dtype, cache_enabled=not graphs) if dtype != torch.float32 \
        else nullcontext()
    compiled = _maybe_compile(model, cfg, device, say)
    first = [dataset.batch(cfg.seed, step, m, cfg.batch_size, cfg.block_size) for m in micros]
    if compiled is not model and step < cfg.max_iters:
        x, y = to_device(first[0], device)
        with autocast:
            compiled = _first_compiled_call(compiled, model, x, y, cfg, say)
    net = DDP(compiled, device_ids=[device.index] if device.type == "cuda" else None) if d.enabled else compiled
    step_args = (net, model, optimizers, cfg.grad_accum, cfg.grad_clip, autocast, scaler, d.enabled, device)
    train_step, eval_forward = Step(*step_args), None
    if graphs and step < cfg.max_iters:
        graphed = _capture(step_args, first, cfg, say)
        train_step, eval_forward = graphed or (train_step, None)

    # every rank evaluates its share of the fixed windows; the sums are added up across ranks
    val_windows = dataset.eval_windows("val", cfg.block_size, cfg.eval_tokens, cfg.seed)
    train_windows = dataset.eval_windows("train", cfg.block_size, cfg.eval_tokens, cfg.seed)
    flops_peak = peak_flops(device)

    def evaluate(split: str, windows: np.ndarray) -> float:
        """Mean loss over fixed windows. Full batches go through the compiled model (on CUDA, its captured
        graph); a last, shorter batch through the plain one, so that no new shape makes torch.compile build
        again."""
        compiled.eval()
        total = torch.zeros((), device=device)
        with torch.no_grad():
            for batch in dataset.eval_batches(split, windows[d.rank::d.world_size], cfg.batch_size, cfg.block_size):
                if eval_forward is not None and len(batch) == cfg.batch_size:
                    loss = eval_forward(batch)
                else:
                    x, y = to_device(batch, device)
                    with autocast:
                        _, loss = (compiled if len(batch) == cfg.batch_size else model)(x, y)
                total += loss.float() * len(batch)  # summed on the device: one sync per evaluation
        compiled.train()
        return d.sum(total).item() / len(windows)

    def checkpoint() -> None:
        rng = d.gather({"cpu": torch.get_rng_state(), **({"cuda": torch.cuda.get_rng_state(device)}
                                                         if device.type == "cuda" else {})})
        if d.main:
            run.save(model, {"step": step, "best_val_loss": best_val, "tokens_seen": tokens_seen,
                             "optimizer": [o.state_dict() for o in optimizers], "scaler": scaler.state_dict(), "rng": rng,
                             "model_config": model_cfg.to_json(), "dataset": config["dataset"], "train": cfg.to_json()})

    def finite(loss: torch.Tensor) -> float:
        """The step's loss; a NaN or inf stops training before any checkpoint can save broken weights."""
        value = loss.item()
        if not math.isfinite(value):
            kept = "the last good checkpoint is kept" if run.exists() else "no checkpoint had been written yet"
            raise UserError(f"the loss became {value} by step {step}; training stopped ({kept})",
                            "lower --lr, keep --grad-clip on, or try --dtype float32", exit_code=EXIT_NAN)
        return value

    start_time = time.perf_counter()
    window_time, window_tokens = start_time, 0
    stopped_by = None
    compiled.train()
    with StopSignal() as stop:
        while step < cfg.max_iters:
            lr = lr_at(step, cfg)
            batches = [dataset.batch(cfg.seed, step, m, cfg.batch_size, cfg.block_size) for m in micros]
            try:
                step_loss = train_step(batches, lr)  # no .item(): the GPU is not waited on every step
            except torch.cuda.OutOfMemoryError:
                raise _oom(cfg) from None
            step += 1
            tokens_seen += cfg.tokens_per_step
            window_tokens += cfg.tokens_per_step

            last = step == cfg.max_iters
            if step % cfg.log_interval == 0 or step % cfg.eval_interval == 0 or last:
                loss_value = finite(d.sum(step_loss))
                now = time.perf_counter()
                tok_s = window_tokens / (now - window_time)
                row = {"step": step, "tokens_seen": tokens_seen, "lr": lr, "train_loss": loss_value}
                if step % cfg.eval_interval == 0 or last:
                    val = evaluate("val", val_windows)
                    row.update(train_eval_loss=evaluate("train", train_windows), val_loss=val, val_bpc=val / math.log(2))
                    best_val = min(best_val, val)
                row.update(tokens_per_s=round(tok_s, 1), elapsed_s=round(now - start_time, 3))
                if flops_peak:
                    row["mfu"] = round(model.flops_per_token() * tok_s / (flops_peak * d.world_size), 6)
                if d.main:
                    run.append_metrics(row)
                (on_row or (lambda r: say(log_line(r, cfg))))(row)
                if "val_loss" in row:
                    checkpoint()
                window_time, window_tokens = time.perf_counter(), 0
            if d.any(stop.signum is not None) and not last:  # a signal to any rank stops them all here
                finite(d.sum(step_loss))
                checkpoint()
                stopped_by = signal.Signals(stop.signum).name if stop.signum else "SIGTERM"
                break
    return Result(run.path, step, best_val, tokens_seen, time.perf_counter() - start_time, stopped_by)


def _set_rng(rng: dict, device: torch.device) -> None:
    torch.set_rng_state(rng["cpu"].cpu())
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"].cpu(), device)


def _oom(cfg: TrainConfig) -> UserError:
    return UserError(f"out of GPU memory at batch size {cfg.batch_size} x block {cfg.block_size}",
                     f"use a smaller --batch-size with a larger --grad-accum (e.g. --batch-size "
                     f"{max(cfg.batch_size // 2, 1)} --grad-accum {cfg.grad_accum * 2}): same tokens per step")


def log_line(row: dict, cfg: TrainConfig) -> str:
    s = f"step {row['step']:>6}/{cfg.max_iters}  loss {row['train_loss']:.4f}  lr {row['lr']:.2e}  {row['tokens_per_s']:,.0f} tok/s"
    if "val_loss" in row:
        s += f"  val {row['val_loss']:.4f} ({row['val_bpc']:.3f} bpc)"
    if "mfu" in row:
        s += f"  mfu {row['mfu']:.1%}"
    return s


def _check_fresh(run: RunFolder, force: bool) -> None:
    if not run.exists() or force:
        return
    state_step, max_iters = _saved_progress(run)
    if state_step is not None and state_step >= max_iters:
        raise UserError(f"{run.path} already holds a finished run ({state_step:,} steps)",
                        "choose another --out, or add --force to train over it")
    raise UserError(f"{run.path} holds an unfinished run (checkpoint at step {state_step})",
                    "add --resume to continue it, --force to start over, or choose another --out")


def _saved_progress(run: RunFolder) -> tuple[int | None, int]:
    try:
        state = run.load_state(torch.device("cpu"))
        return state["step"], state["train"]["max_iters"]
    except Exception:
        return None, 0


def _resume(run: RunFolder, config: dict) -> dict:
    if not run.exists():
        raise UserError(f"--resume: {run.path} has no checkpoint ({run.file('train_state.pt').name})",
                        "drop --resume to start a new run there, or point --out at the run to continue")
    try:
        state = run.load_state(torch.device("cpu"))
    except Exception as e:
        raise UserError(f"--resume: cannot read {run.file('train_state.pt')}: {e}",
                        "the checkpoint is damaged; start over with --force") from None
    if state["dataset"]["manifest_sha256"] != config["dataset"]["manifest_sha256"]:
        raise UserError(f"--resume: {run.path} was trained on another dataset ({state['dataset']['folder']})",
                        "resume with the same --data, or start a new run with another --out")
    if state["model_config"] != config["model"]:
        diff = {k: (state["model_config"].get(k), v) for k, v in config["model"].items() if state["model_config"].get(k) != v}
        raise UserError("--resume: the model shape differs from the checkpoint's: "
                        + ", ".join(f"{k} was {a}, now {b}" for k, (a, b) in diff.items()),
                        "resume with the run's own flags (see its config.json), or start a new run with another --out")
    return state


def _maybe_compile(model: GPT, cfg: TrainConfig, device: torch.device, say):
    """torch.compile (on by default on CUDA), in its default mode: the CUDA graph is step.py's, around it."""
    use = cfg.compile if cfg.compile is not None else device.type == "cuda"
    if not use:
        return model
    try:
        return torch.compile(model)
    except Exception as e:  # e.g. an unsupported Python or platform: train uncompiled
        say(f"torch.compile is not available here ({type(e).__name__}: {e}); training without it")
        return model


def _capture(step_args: tuple, first: list, cfg: TrainConfig, say):
    """The training step and the evaluation forward pass (of the same network) as CUDA graphs; or None
    where capture fails (the step then runs as it is: a few times slower at the seed preset's size)."""
    def both():
        step = GraphedStep(*step_args, first=first)
        return step, GraphedForward(step.net, step.autocast, first[0].shape, step.device)
    return _or_else(both, None, "CUDA graph capture", "--no-cuda-graphs", cfg, say)


def _first_compiled_call(compiled, model: GPT, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, say):
    """torch.compile compiles on the first call; where that fails (no Triton, no C compiler, an
    unsupported platform), say so and train the uncompiled model instead. The trial call is the
    evaluation graph (eval mode, full batch, no grad), which evaluation needs anyway."""
    def trial():
        compiled.eval()
        try:
            with torch.no_grad():
                compiled(x, y)
        finally:
            compiled.train()
        return compiled
    return _or_else(trial, model, "torch.compile", "--no-compile", cfg, say)


def _or_else(fn, fallback, what: str, flag: str, cfg: TrainConfig, say):
    """fn(); where it fails other than for memory, a note, and the fallback: training goes on without it."""
    try:
        return fn()
    except torch.cuda.OutOfMemoryError:
        raise _oom(cfg) from None
    except Exception as e:
        say(f"{what} failed here ({brief(e)}); training without it ({flag} skips the attempt)")
        return fallback


def summary(result: Result, config: TrainConfig) -> str:
    lines = [f"run: {result.run}"]
    if result.stopped_by:
        lines.append(f"stopped by {result.stopped_by} at step {result.step:,}; checkpoint saved: continue with --resume")
    else:
        lines.append(f"finished {result.step:,} steps")
    if math.isfinite(result.best_val_loss):
        lines.append(f"best val loss {result.best_val_loss:.4f} nats/char ({result.best_val_loss / math.log(2):.4f} bits/char)")
    lines.append(f"{result.tokens:,} tokens in {result.seconds:.1f} s; weights: {result.run / 'model.safetensors'}")
    return "\n".join(lines)
