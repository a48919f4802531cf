"""Benchmark minigpt-train: training throughput and the cost of drawing a batch.

    python bench/train_bench.py --data data/c4-en-3000                     # seed preset, this device
    python bench/train_bench.py --data DIR --preset tiny --steps 30 --variants eager,compile

1. Tokens/s and ms/step of minigpt-train's training step (minigpt/step.py: forward, backward, clip,
   the optimizers) for a preset on the available device, after warm-up: eager, compiled, and on CUDA
   also captured as one CUDA graph, with and without torch.compile; MFU on CUDA against the peak
   table in minigpt/device.py. On the CPU, bench/cpu_bench.py times the step as the trainer builds it
   (oneDNN's Linear, keyed dropout masks, the malloc setting); this one builds the plain step.
2. In the same run, the batch draw: minigpt's keyed, vectorised gather against the nanoGPT way (a
   Python loop over rows, one slice of the memmap each, then torch.stack), for the preset's batch,
   as a ratio and as a share of one training step.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minigpt.config import make_config  # noqa: E402
from minigpt.data.loader import TokenData, find_dataset  # noqa: E402
from minigpt.errors import brief  # noqa: E402
from minigpt.model import GPT, GPTConfig  # noqa: E402
from minigpt.optim import lr_at, make_optimizers  # noqa: E402
from minigpt.step import GraphedStep, Step  # noqa: E402
from minigpt.device import muon_dtype, peak_flops, resolve_device, resolve_dtype  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def nanogpt_batch(path: Path, dtype: np.dtype, B: int, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """nanoGPT's get_batch (train.py), as it is: a fresh np.memmap per call, then a Python loop over
    the rows, once for inputs and once for targets, and torch.stack."""
    data = np.memmap(path, dtype=dtype, mode="r")
    ix = torch.randint(len(data) - T, (B,))
    x = torch.stack([torch.from_numpy((data[i : i + T]).astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy((data[i + 1 : i + 1 + T]).astype(np.int64)) for i in ix])
    return x, y


def time_draws(fn, n: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def time_training(cfg, dataset: TokenData, device: torch.device, variant: str, steps: int, warmup: int) -> dict:
    """ms/step of minigpt-train's own step (minigpt/step.py) in one variant: eager, compile, graph (the
    whole step as a CUDA graph) or compile+graph (what minigpt-train does on CUDA)."""
    torch.manual_seed(cfg.seed)
    dtype, _ = resolve_dtype(cfg.dtype, device, cfg.n_embd)
    model = GPT(GPTConfig.from_train(cfg, dataset.manifest["vocab_size"])).to(device)
    ns_dtype, _ = muon_dtype(cfg.muon_dtype, device, cfg.n_embd)  # as minigpt-train chooses it
    opts = make_optimizers(model, cfg, device, ns_dtype)
    net = torch.compile(model) if "compile" in variant else model
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    autocast = torch.autocast(
        device.type, dtype=dtype, enabled=dtype != torch.float32, cache_enabled="graph" not in variant
    )  # as minigpt-train: no cache in capture
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True

    def batches(step: int) -> list[np.ndarray]:
        return [dataset.batch(cfg.seed, step, m, cfg.batch_size, cfg.block_size) for m in range(cfg.grad_accum)]

    args = (net, model, opts, cfg.grad_accum, cfg.grad_clip, autocast, scaler, False, device)
    start = time.perf_counter()
    train_step = GraphedStep(*args, first=batches(0)) if "graph" in variant else Step(*args)
    t0 = None
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            t0 = time.perf_counter()
        loss = train_step(batches(step), lr_at(step, cfg))
    sync(device)
    seconds = (time.perf_counter() - t0) / steps
    tok_s = cfg.tokens_per_step / seconds
    peak = peak_flops(device)
    return {
        "variant": variant,
        "muon_dtype": str(ns_dtype)[6:],
        "ms_per_step": round(seconds * 1000, 2),
        "tokens_per_s": round(tok_s, 1),
        "mfu": round(model.flops_per_token() * tok_s / peak, 4) if peak else None,
        "setup_and_warmup_s": round(t0 - start, 1),
        "est_s_for_max_iters": round(seconds * cfg.max_iters, 1),
        "final_loss": round(loss.item(), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="dataset folder (default: the newest under data/)")
    ap.add_argument("--preset", default="seed")
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--muon-dtype",
        default="auto",
        help="Muon's Newton-Schulz precision: auto (as minigpt-train), bfloat16 or float32",
    )
    ap.add_argument("--steps", type=int, default=50, help="timed steps")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first (compilation happens here)")
    ap.add_argument(
        "--variants",
        default="auto",
        help="comma-separated: eager, compile, graph, compile+graph "
        "(graph: the whole step as one CUDA graph); auto: all four on CUDA, eager elsewhere",
    )
    ap.add_argument("--draws", type=int, default=200, help="batch draws timed per method")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    folder, _ = find_dataset(args.data)
    dataset = TokenData(folder)
    cfg = make_config(args.preset, device=args.device, muon_dtype=args.muon_dtype)
    device = resolve_device(cfg.device)
    B, T = cfg.batch_size, cfg.block_size
    shards = dataset.manifest["splits"]["train"]["shards"]
    biggest = folder / max(shards, key=lambda s: s["tokens"])["file"]
    step = [0]

    def keyed():  # both sides end with (inputs, targets) CPU tensors of int64
        step[0] += 1
        batch = torch.from_numpy(dataset.batch(cfg.seed, step[0], 0, B, T))
        return batch[:, :-1], batch[:, 1:]

    ours = time_draws(keyed, args.draws)
    loop = time_draws(lambda: nanogpt_batch(biggest, dataset.dtype, B, T), args.draws)

    variants = (
        args.variants.split(",")
        if args.variants != "auto"
        else ["eager", "compile", "graph", "compile+graph"]
        if device.type == "cuda"
        else ["eager"]
    )
    runs = []
    for v in variants:
        try:
            runs.append(time_training(cfg, dataset, device, v, args.steps, args.warmup))
        except Exception as e:  # e.g. no Triton for compile: report it, time the others
            print(f"{v}: failed ({brief(e, 300)})", file=sys.stderr)
            runs.append({"variant": v, "error": brief(e, 300)})
    timed = [r for r in runs if "error" not in r]
    step_s = min(r["ms_per_step"] for r in timed) / 1000
    draw_share = ours * cfg.grad_accum / step_s
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    for r in timed:
        print(
            f"{args.preset} on {device.type} ({name}), {r['variant']}, Newton-Schulz in {r['muon_dtype']}: "
            f"{r['ms_per_step']:.2f} ms/step, "
            f"{r['tokens_per_s']:,.0f} tok/s"
            + (f", MFU {r['mfu']:.1%}" if r["mfu"] else "")
            + f", {cfg.max_iters:,} iters ~ {r['est_s_for_max_iters']:.0f} s",
            file=sys.stderr,
        )
    print(
        f"batch draw (B={B}, T={T}): keyed gather {ours * 1e6:.0f} us, nanoGPT row loop {loop * 1e6:.0f} us "
        f"({loop / ours:.1f}x faster); {draw_share:.2%} of a training step",
        file=sys.stderr,
    )
    result = {
        "bench": "train",
        "date": time.strftime("%Y-%m-%d"),
        "device": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "preset": args.preset,
        "config": cfg.to_json(),
        "dataset": folder.name,
        "runs": runs,
        "draw_us": round(ours * 1e6, 1),
        "nanogpt_draw_us": round(loop * 1e6, 1),
        "draw_speedup": round(loop / ours, 2),
        "draw_share_of_step": round(draw_share, 5),
    }
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
