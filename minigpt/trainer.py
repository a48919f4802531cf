"""minigpt-train: the training loop over a prepared dataset, with exact resume.

Every source of randomness is keyed (keys.py): batches by (seed, step, micro-batch) in data/loader.py,
weights by the seed, the CPU's dropout masks by (seed, step, micro-batch) in layers.py, and elsewhere
dropout by torch's generator, whose state every checkpoint saves. So on the CPU the same command gives
the same metrics.jsonl (apart from timing fields), and a run stopped at any step and resumed ends with
byte-identical weights.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from . import memory, signals
from .checkpoint import RUNS_DIR, RunFolder, versions
from .config import CPU_EVAL_BATCH, TrainConfig, eval_origin, eval_rule, lr_origin
from .kernels import onednn_layout, onednn_matmul_rule
from .data.loader import TokenData, find_dataset, to_device
from .data.shards import SPLITS
from .data.vocab import VOCAB_FILE
from .device import cpu_flags, describe, keep_freed_memory, muon_dtype, peak_flops, resolve_device, resolve_dtype
from .distributed import Dist, micro_batches, setup
from .errors import UserError, brief
from .files import folder_lock
from .finetune import InitFrom, start as start_from
from .model import GPT, GPTConfig
from .optim import lr_at, make_optimizers
from .progress import pace
from .resume import check_fresh, checked_state, saved_train, with_defaults
from .scoring import forward_of, summed_loss
from .graphs import GraphedForward
from .step import GraphedStep, Step
from .tblog import open_writer, summary_writer, write_row
from .wandblog import log_row, wandb_module
from .wandblog import open_run as wandb_run

EXIT_NAN = 3
SLOW_STEP_S = 5.0  # a first step slower than this says what the whole run will take


@dataclass
class Result:
    run: Path
    step: int
    best_val_loss: float
    tokens: int
    seconds: float
    stopped_by: str | None = None  # "SIGTERM" / "SIGINT" when a signal ended the run early
    eval_seconds: float = 0.0  # of `seconds`: evaluations and checkpoints


class StopSignal:
    """SIGTERM and Ctrl-C set a flag; the loop checkpoints at the end of the step and stops. A second one
    exits at once (signals.py), the last checkpoint on disk kept."""

    def __init__(self):
        self.signum: int | None = None

    def __enter__(self):
        self._old = {s: signal.signal(s, self._set) for s in (signal.SIGINT, signal.SIGTERM)}
        signals.say_first(
            "{signal}: stopping at the end of this step, with a checkpoint; "
            "Ctrl-C again to stop at once (keeping the last checkpoint on disk)"
        )
        return self

    def _set(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        signals.say_first(None)
        for s, h in self._old.items():
            signal.signal(s, h)


def train(
    cfg: TrainConfig,
    data: Path | None = None,
    out: Path | None = None,
    resume: bool = False,
    force: bool = False,
    verify_data: bool = False,
    say=print,
    on_row=None,
    backend: str = "auto",
    dist_timeout: float = 300.0,
    init_from: InitFrom | None = None,
    tensorboard: bool = False,
    wandb_project: str | None = None,
) -> Result:
    """Train (or with resume, continue) a run; `say` gets notes and log lines, `on_row` every metrics row.
    init_from: start from that run's weights (finetune.py; cfg already has its shape). Under torchrun,
    every rank calls this; rank 0 alone speaks and writes (see distributed.py)."""
    d, device = setup(resolve_device(cfg.device), backend, dist_timeout)
    if not d.main:
        say, on_row = (lambda *_: None), (lambda row: None)
    try:
        with ExitStack() as held:
            trainer = Trainer(cfg, d, device, say, on_row, init_from, held)
            trainer.open(data, out, resume, force, verify_data, tensorboard, wandb_project)
            trainer.prepare_step()
            result = trainer.loop()
    except BaseException:
        d.close(clean=False)
        raise
    d.close(clean=True)
    return result


class Trainer:
    """One run in this process: open() builds it (fresh or from its checkpoint), prepare_step() makes the
    step as it will run, loop() trains, evaluates, logs and checkpoints until max_iters or a signal."""

    def __init__(
        self,
        cfg: TrainConfig,
        d: Dist,
        device: torch.device,
        say,
        on_row,
        init_from: InitFrom | None = None,
        held: ExitStack | None = None,
    ):
        self.cfg, self.d, self.device, self.say, self.init_from = cfg, d, device, say, init_from
        self.held = held or ExitStack()  # what the run holds until it ends: its folder's lock
        self.on_row = on_row or (lambda row: say(log_line(row, cfg)))
        self.step, self.best_val, self.tokens_seen = 0, float("inf"), 0
        self.eval_seconds = 0.0
        if device.type == "cpu":
            keep_freed_memory()

    def open(
        self,
        data: Path | None,
        out: Path | None,
        resume: bool,
        force: bool,
        verify_data: bool,
        tensorboard: bool = False,
        wandb_project: str | None = None,
    ) -> None:
        """The dataset, the run folder, the model and its optimizers: from scratch, or from the checkpoint."""
        cfg, d = self.cfg, self.d
        if tensorboard:
            summary_writer()  # before anything is written: the extra is installed, or one message
        if wandb_project:
            wandb_module()
        folder, note = d.agree(lambda: find_dataset(data))
        if note:
            self.say(note)
        self.dataset = TokenData(folder, verify=verify_data)
        self.dataset.check_block_size(cfg.block_size)
        self.micros = micro_batches(cfg.grad_accum, d)
        self.dtype, dtype_why = resolve_dtype(cfg.dtype, self.device, cfg.n_embd)
        self.ns_dtype, ns_why = muon_dtype(cfg.muon_dtype, self.device, cfg.n_embd)
        onednn, matmul_why = _cpu_matmul(cfg, self.device)
        init = self.init_from
        name = f"{folder.name}-from-{init.run.path.resolve().name}" if init else f"{folder.name}-{cfg.preset}"
        self.run = RunFolder(out if out is not None else RUNS_DIR / name)
        d.agree(self._hold_folder)
        self.cfg = cfg = self._eval_budget(resume)
        self.model_cfg = GPTConfig.from_train(cfg, self.dataset.manifest["vocab_size"])
        self.config = {
            "model": self.model_cfg.to_json(),
            "train": cfg.to_json(),
            "dataset": {
                "folder": str(folder.resolve()),
                "manifest_sha256": self.dataset.manifest_sha256,
                "vocab_sha256": self.dataset.manifest["vocab_sha256"],
            },
            "runtime": self._runtime(dtype_why, ns_why, onednn, matmul_why),
            "versions": versions(),
        }
        if init:
            self.config["init_from"] = init.to_json()
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.model = GPT(self.model_cfg).to(self.device)
        self.config["params"] = self.model.num_params()
        if init and not resume:  # every rank reads the same file
            start_from(self.model, init, self.dataset.manifest["vocab_sha256"], self.device)
            self.say(
                f"starting from the weights of {init.run.path} (its step {init.step}), a fresh optimizer and schedule"
            )
        if onednn:
            onednn_layout(self.model)
        self.optimizers = make_optimizers(self.model, cfg, self.device, self.ns_dtype)
        if note := d.agree(
            lambda: memory.check_training(self.model, cfg, self.optimizers, self.device, self.dtype)
        ):  # before the run folder is written
            self.say(note)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        if resume:
            self._resume()
        else:
            d.agree(lambda: (check_fresh(self.run, force), self.run.start(self.config, folder / VOCAB_FILE)))
            if d.rank:
                torch.manual_seed(cfg.seed + d.rank)  # dropout masks of their own for the other ranks
        self.tb = None
        if tensorboard and d.main:
            self.tb = open_writer(self.run.path, self.step if resume else None)
            self.held.callback(self.tb.close)
        self.wandb = None
        if wandb_project and d.main:
            self.wandb = wandb_run(self.run.path, wandb_project, self.config, resume)
            self.held.callback(self.wandb.finish)
        self._kept()
        self.say(startup_line(self.config["runtime"]))
        self.say(f"peak learning rate {cfg.lr:g}: {lr_origin(cfg)}")
        self.say(eval_origin(cfg, self.dataset.tokens("val")))

    def _eval_budget(self, resume: bool) -> TrainConfig:
        """--eval-tokens where given; on --resume, the run's own (its windows stay the same); else, on a CPU,
        eval_rule's budget for this run; elsewhere the preset's."""
        cfg = self.cfg
        if cfg.eval_tokens_from == "flag":
            return cfg
        saved = self.d.agree(lambda: saved_train(self.run)) if resume else None
        if saved is not None and "eval_tokens" in saved:
            return replace(
                cfg, eval_tokens=saved["eval_tokens"], eval_tokens_from=saved.get("eval_tokens_from", "preset")
            )
        if self.device.type == "cpu":
            return replace(cfg, eval_tokens=eval_rule(cfg), eval_tokens_from="rule")
        return cfg

    def _hold_folder(self) -> None:
        """Rank 0 writes the run folder: its lock, held to the end of the run, and what a killed process
        left mid-write there removed."""
        self.held.enter_context(folder_lock(self.run.path, "minigpt-train"))
        if self.run.path.is_dir():
            self.run.clean_temporary()

    def _runtime(self, dtype_why: str, ns_why: str, onednn: bool, matmul_why: str) -> dict:
        """How this run computes, as config.json records it and the start-up line says it."""
        rt = {
            "device": str(self.device),
            "device_name": describe(self.device),
            "dtype": str(self.dtype)[6:],
            "dtype_why": dtype_why,
            "world_size": self.d.world_size,
        }
        if self.cfg.optimizer == "muon":
            rt.update(muon_dtype=str(self.ns_dtype)[6:], muon_dtype_why=ns_why)
        if self.device.type == "cpu":
            rt.update(
                threads=torch.get_num_threads(),
                cpu_flags=cpu_flags(),
                keep_freed_memory=keep_freed_memory(),
                matmul=f"{'oneDNN' if onednn else 'default'} ({matmul_why})",
            )
        return rt

    def _resume(self) -> None:
        d, cfg = self.d, self.cfg
        state = d.agree(lambda: checked_state(self.run, self.config))
        self.model.load_state_dict(state["model"])
        for opt, opt_state in zip(self.optimizers, state["optimizer"]):
            opt.load_state_dict(opt_state)
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.best_val, self.tokens_seen = state["step"], state["best_val_loss"], state["tokens_seen"]
        if len(state["rng"]) == d.world_size:
            _set_rng(state["rng"][d.rank], self.device)
        else:
            self.say(
                f"the checkpoint was written by {len(state['rng'])} process(es), this run has {d.world_size}: "
                "the batches are the same (on the CPU the dropout masks too); torch's RNG starts afresh"
            )
            torch.manual_seed(cfg.seed + 1_000_003 * self.step + d.rank)
        if d.main:
            self.run.save_weights(self.model)  # the checkpoint's own weights, in case a kill came between its files
            if self.run.truncate_metrics(self.step):
                self.say(
                    f"{self.run.file('metrics.jsonl')} ended in a torn line (a crash while it was written): dropped"
                )
            self._record_changes(state["train"])
        self.say(f"resuming {self.run.path} at step {self.step:,} of {cfg.max_iters:,}")

    def _record_changes(self, saved: dict) -> None:
        """The flags a resume changed (those it may: RESUME_MAY_CHANGE), in config.json with the step."""
        saved = with_defaults(saved)
        changed = {k: [saved[k], v] for k, v in self.cfg.to_json().items() if k != "preset" and saved[k] != v}
        if not changed:
            return
        config = self.run.read_config()
        config["train"] = self.cfg.to_json()
        config.setdefault("resumes", []).append({"step": self.step, "changed": changed})
        self.run.write_config(config)
        self.say("changed on resume: " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()))

    def prepare_step(self) -> None:
        """The step as it will run: compiled, under DDP, captured as a CUDA graph, where each applies."""
        cfg, d, device, dtype = self.cfg, self.d, self.device, self.dtype
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        # CUDA graphs: not under DDP (its hooks run between kernels), nor with fp16's scaler (it syncs every step)
        graphs = cfg.cuda_graphs and device.type == "cuda" and not d.enabled and dtype != torch.float16
        # autocast's cache of cast weights is kept out of graph capture, as torch's CUDA graph notes advise
        self.autocast = (
            torch.autocast(device.type, dtype=dtype, cache_enabled=not graphs)
            if dtype != torch.float32
            else nullcontext()
        )
        self.compiled = _maybe_compile(self.model, cfg, device, self.say)
        first = [self.dataset.batch(cfg.seed, self.step, m, cfg.batch_size, cfg.block_size) for m in self.micros]
        if self.compiled is not self.model and self.step < cfg.max_iters:
            x, y = to_device(first[0], device)
            with self.autocast:
                self.compiled = _first_compiled_call(self.compiled, self.model, x, y, cfg, self.say)
        net = (
            DDP(self.compiled, device_ids=[device.index] if device.type == "cuda" else None)
            if d.enabled
            else self.compiled
        )
        step_args = (
            net,
            self.model,
            self.optimizers,
            cfg.grad_accum,
            cfg.grad_clip,
            self.autocast,
            self.scaler,
            d.enabled,
            device,
        )
        self.train_step, self.eval_forward = Step(*step_args), None
        if graphs and self.step < cfg.max_iters:
            graphed = _capture(step_args, first, cfg, self.say)
            self.train_step, self.eval_forward = graphed or (self.train_step, None)
        # every rank evaluates its share of the fixed windows; the sums are added up across ranks
        self.windows = {
            split: self.dataset.eval_windows(split, cfg.block_size, cfg.eval_tokens, cfg.seed) for split in SPLITS
        }
        self.eval_batch = (
            memory.fitting_eval_batch(
                self.model, cfg, self.optimizers, device, dtype, max(cfg.batch_size, CPU_EVAL_BATCH)
            )
            if device.type == "cpu" and self.compiled is self.model
            else cfg.batch_size
        )  # a compiled model or a CUDA graph keeps the training batch's shape
        self.flops_peak = peak_flops(device)

    def evaluate(self, split: str) -> float:
        """Mean loss over the split's fixed windows (scoring.py), each rank scoring its share of them."""
        cfg, d, windows = self.cfg, self.d, self.windows[split]
        self.compiled.eval()
        forward = forward_of(self.model, self.autocast, self.device, cfg.batch_size, self.compiled, self.eval_forward)
        batches = self.dataset.eval_batches(split, windows[d.rank :: d.world_size], self.eval_batch, cfg.block_size)
        total = summed_loss(forward, batches, self.device)
        self.compiled.train()
        return d.sum(total).item() / len(windows)

    def checkpoint(self) -> None:
        rng = self.d.gather(
            {
                "cpu": torch.get_rng_state(),
                **({"cuda": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {}),
            }
        )
        if self.d.main:
            self.run.save(
                self.model,
                {
                    "step": self.step,
                    "best_val_loss": self.best_val,
                    "tokens_seen": self.tokens_seen,
                    "optimizer": [o.state_dict() for o in self.optimizers],
                    "scaler": self.scaler.state_dict(),
                    "rng": rng,
                    "model_config": self.model_cfg.to_json(),
                    "dataset": self.config["dataset"],
                    "train": self.cfg.to_json(),
                },
            )
        self._kept()

    def _kept(self) -> None:
        """What a second Ctrl-C, which exits at once, leaves: the last checkpoint, as of now."""
        signals.keep(
            f"the checkpoint of step {self.step:,} in {self.run.path} is the one on disk; nothing after it was "
            "saved (continue with --resume)"
            if self.run.exists()
            else f"no checkpoint of {self.run.path} had been written: nothing of this run was saved"
        )

    def finite(self, loss: torch.Tensor) -> float:
        """The step's loss; a NaN or inf stops training before any checkpoint can save broken weights."""
        value = loss.item()
        if not math.isfinite(value):
            kept = "the last good checkpoint is kept" if self.run.exists() else "no checkpoint had been written yet"
            raise UserError(
                f"the loss became {value} by step {self.step}; training stopped ({kept})",
                "lower --lr, keep --grad-clip on, or try --dtype float32",
                exit_code=EXIT_NAN,
            )
        return value

    def log(self, step_loss: torch.Tensor, lr: float, tok_s: float, elapsed: float) -> None:
        """One metrics row (with an evaluation and a checkpoint at eval steps and the last)."""
        cfg, step = self.cfg, self.step
        row = {
            "step": step,
            "tokens_seen": self.tokens_seen,
            "lr": lr,
            "train_loss": self.finite(self.d.sum(step_loss)),
        }
        evaluating = step % cfg.eval_interval == 0 or step == cfg.max_iters
        started = time.perf_counter()
        if evaluating:
            val = self.evaluate("val")
            row.update(train_eval_loss=self.evaluate("train"), val_loss=val, val_bpc=val / math.log(2))
            self.best_val = min(self.best_val, val)
        # elapsed_s: this process's clock, which started at step clock_from (0, or where --resume took over)
        row.update(tokens_per_s=round(tok_s, 1), elapsed_s=round(elapsed, 3), clock_from=self.clock_from)
        if self.flops_peak:
            row["mfu"] = round(self.model.flops_per_token() * tok_s / (self.flops_peak * self.d.world_size), 6)
        if self.d.main:
            self.run.append_metrics(row)
        if self.tb is not None:
            write_row(self.tb, row)
            if evaluating:
                self.tb.flush()
        if self.wandb is not None:
            log_row(self.wandb, row)
        self.on_row(row)
        if evaluating:
            self.checkpoint()
            self.eval_seconds += time.perf_counter() - started

    def _pace(self, seconds: float) -> None:
        """After the first step, where it was slow: what the run will take at this pace, said at once."""
        left = self.cfg.max_iters - self.step
        if seconds >= SLOW_STEP_S and left:
            self.say(
                f"step {self.step:,} took {seconds:.1f} s: the {left:,} steps left would take about "
                f"{_duration(left * seconds)} at this pace (Ctrl-C stops at the end of a step, with a checkpoint)"
            )

    def loop(self) -> Result:
        cfg, d = self.cfg, self.d
        start_time = time.perf_counter()
        window_time, window_tokens = start_time, 0
        stopped_by, first = None, self.step
        self.clock_from = first
        self.compiled.train()
        with StopSignal() as stop:
            while self.step < cfg.max_iters:
                lr = lr_at(self.step, cfg)
                batches = [
                    self.dataset.batch(cfg.seed, self.step, m, cfg.batch_size, cfg.block_size) for m in self.micros
                ]
                keys = [(cfg.seed, self.step, m) for m in self.micros]  # the CPU's dropout masks (layers.DropoutMasks)
                try:
                    step_loss = self.train_step(batches, lr, keys)  # no .item(): the GPU is not waited on every step
                except torch.cuda.OutOfMemoryError:
                    raise _oom(cfg) from None
                self.step += 1
                self.tokens_seen += cfg.tokens_per_step
                window_tokens += cfg.tokens_per_step
                last = self.step == cfg.max_iters
                if self.step == first + 1 and self.device.type != "cuda":  # on CUDA the first step compiles
                    self._pace(time.perf_counter() - start_time)
                if self.step % cfg.log_interval == 0 or self.step % cfg.eval_interval == 0 or last:
                    now = time.perf_counter()
                    self.log(step_loss, lr, window_tokens / (now - window_time), now - start_time)
                    window_time, window_tokens = time.perf_counter(), 0
                if d.any(stop.signum is not None) and not last:  # a signal to any rank stops them all here
                    self.finite(d.sum(step_loss))
                    self.checkpoint()
                    stopped_by = signal.Signals(stop.signum).name if stop.signum else "SIGTERM"
                    break
        return Result(
            self.run.path,
            self.step,
            self.best_val,
            self.tokens_seen,
            time.perf_counter() - start_time,
            stopped_by,
            self.eval_seconds,
        )


def _cpu_matmul(cfg: TrainConfig, device: torch.device) -> tuple[bool, str]:
    """Whether the model's Linear layers go to oneDNN (kernels.OneDNNLinear), and why."""
    if device.type != "cpu":
        return False, device.type
    if cfg.compile:
        return False, "--compile (inductor makes its own)"
    return onednn_matmul_rule()


def startup_line(rt: dict) -> str:
    """How the run computes, in one line: the device, the precision, Muon's iteration and why."""
    line = f"training on {rt['device']} ({rt['device_name']}) in {rt['dtype']}"
    if rt["dtype"] != "float32":
        line += " autocast"  # the weights, the optimizers and the loss stay fp32
    line += f" ({rt['dtype_why']})"
    if "matmul" in rt:
        line += f"; matrix products: {rt['matmul']}"
    if "muon_dtype" in rt:
        line += f"; Muon's Newton-Schulz iteration in {rt['muon_dtype']} ({rt['muon_dtype_why']})"
    return line


def _set_rng(rng: dict, device: torch.device) -> None:
    torch.set_rng_state(rng["cpu"].cpu())
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"].cpu(), device)


def _oom(cfg: TrainConfig) -> UserError:
    return UserError(
        f"out of GPU memory at batch size {cfg.batch_size} x block {cfg.block_size}",
        f"use a smaller --batch-size with a larger --grad-accum (e.g. --batch-size "
        f"{max(cfg.batch_size // 2, 1)} --grad-accum {cfg.grad_accum * 2}): same tokens per step",
    )


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 60:,.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def log_line(row: dict, cfg: TrainConfig) -> str:
    s = f"step {row['step']:>6}/{cfg.max_iters}  loss {row['train_loss']:.4f}  lr {row['lr']:.2e}  {row['tokens_per_s']:,.0f} tok/s"
    s += pace(cfg.tokens_per_step, row["tokens_per_s"])
    if "val_loss" in row:
        s += f"  val {row['val_loss']:.4f} ({row['val_bpc']:.3f} bpc)"
    if "mfu" in row:
        s += f"  mfu {row['mfu']:.1%}"
    return s


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
        lines.append(
            f"stopped by {result.stopped_by} at step {result.step:,}; checkpoint saved: continue with --resume"
        )
    else:
        lines.append(f"finished {result.step:,} steps")
    if math.isfinite(result.best_val_loss):
        lines.append(
            f"best val loss {result.best_val_loss:.4f} nats/char ({result.best_val_loss / math.log(2):.4f} bits/char)"
        )
    lines.append(
        f"{result.tokens:,} tokens in {result.seconds:.1f} s (evaluation and checkpoints {result.eval_seconds:.1f} s); "
        f"weights: {result.run / 'model.safetensors'}"
    )
    return "\n".join(lines)
