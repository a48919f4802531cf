"""Where a training step's time goes on a GPU: variants of the step, timed, then a torch.profiler table.

    python bench/step_profile.py --data data/c4-bench-3000 [--preset seed] [--steps 50]

Variants (each after warm-up, the same preset): the step as minigpt-train ran it before step.py
(eager and compiled), with the batch already on the GPU, without gradient clipping, and compiled with
CUDA graphs around the model only (mode="reduce-overhead"); then the profiler's top operators by self
CPU and by GPU time for the compiled step. Prints a table and one JSON line. This is the profile that
led to capturing the whole step (minigpt/step.py); bench/train_bench.py times that step itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minigpt.config import make_config  # noqa: E402
from minigpt.data.loader import TokenData, find_dataset, to_device  # noqa: E402
from minigpt.model import GPT, GPTConfig  # noqa: E402
from minigpt.optim import make_optimizers  # noqa: E402


def build(cfg, dataset, device, compile_mode):
    torch.manual_seed(cfg.seed)
    model = GPT(GPTConfig.from_train(cfg, dataset.manifest["vocab_size"])).to(device)
    opts = make_optimizers(model, cfg, device)
    run = model if compile_mode is None else torch.compile(model, mode=compile_mode)
    return model, run, opts


def make_step(cfg, dataset, device, model, run, opts, staged: bool, clip: bool):
    fixed = to_device(dataset.batch(cfg.seed, 0, 0, cfg.batch_size, cfg.block_size), device)
    it = [0]

    def step():
        it[0] += 1
        if staged:
            x, y = fixed
        else:
            x, y = to_device(dataset.batch(cfg.seed, it[0], 0, cfg.batch_size, cfg.block_size), device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = run(x, y)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        for opt in opts:
            opt.step()
            opt.zero_grad(set_to_none=True)
        return loss

    return step


def timed(step, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path)
    ap.add_argument("--preset", default="seed")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    folder, _ = find_dataset(args.data)
    dataset, cfg, device = TokenData(folder), make_config(args.preset), torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    results = {}
    variants = [
        ("eager", None, False, True),
        ("eager, batch on GPU", None, True, True),
        ("eager, no clip", None, False, False),
        ("compiled", "default", False, True),
        ("compiled, batch on GPU", "default", True, True),
        ("compiled + CUDA graphs", "reduce-overhead", False, True),
    ]
    for name, mode, staged, clip in variants:
        model, run, opt = build(cfg, dataset, device, None if mode is None else mode)
        step = make_step(cfg, dataset, device, model, run, opt, staged, clip)
        try:
            results[name] = round(timed(step, args.steps, 15), 3)
        except Exception as e:
            print(f"{name}: failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
            continue
        print(f"{name:28} {results[name]:8.2f} ms/step", flush=True)
        if name == "compiled":
            with torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            ) as prof:
                for _ in range(10):
                    step()
                torch.cuda.synchronize()
            ka = prof.key_averages()
            print(ka.table(sort_by="self_cpu_time_total", row_limit=25), flush=True)
            print(ka.table(sort_by="self_device_time_total", row_limit=25), flush=True)
        del model, run, opt, step
        torch.cuda.empty_cache()
    # the forward pass alone, as evaluation runs it
    model, run, _ = build(cfg, dataset, device, "default")
    run.eval()
    x, y = to_device(dataset.batch(cfg.seed, 0, 0, cfg.batch_size, cfg.block_size), device)

    def fwd():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            return run(x, y)[1].item()

    results["eval forward (compiled, .item())"] = round(timed(fwd, args.steps, 10), 3)
    print(f"eval forward {results['eval forward (compiled, .item())']:.2f} ms", flush=True)
    # host-side costs: one tiny kernel launch, one batch draw + pinned copy
    a = torch.ones(16, device=device)
    results["us per tiny op (a + 1)"] = round(timed(lambda: a + 1, 2000, 100) * 1000, 2)
    batch = dataset.batch(cfg.seed, 0, 0, cfg.batch_size, cfg.block_size)
    results["us per to_device"] = round(timed(lambda: to_device(batch, device), 500, 50) * 1000, 2)
    results["us per batch draw"] = round(
        timed(lambda: dataset.batch(cfg.seed, 3, 0, cfg.batch_size, cfg.block_size), 500, 50) * 1000, 2
    )
    print(
        json.dumps(
            {
                "bench": "step_profile",
                "device": torch.cuda.get_device_name(),
                "torch": torch.__version__,
                "preset": args.preset,
                "ms_per_step": results,
            }
        )
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
