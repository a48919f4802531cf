"""Peak learning rate sweep of the default recipe at one shape, batch and step budget.

    python bench/lr_sweep.py --data data/prose --name laptop --steps 2000 -- --n-layer 4 --n-head 4 --n-embd 128 \
        --block-size 64 --batch-size 12 --dropout 0
    python bench/lr_sweep.py --data data/prose --name tiny --preset tiny --json bench/results/lr-tiny.json

Trains `train.py --preset P [flags after --] --lr LR --max-iters STEPS` for each lr of a log-spaced grid
(half-decades: 1e-3, 3.16e-3, 1e-2, ...), the whole validation split evaluated at the end
(--eval-tokens 0), and widens the grid by a half-decade on the side where the best sits until the best
is inside it. Several runs at once where cores allow (--parallel; each gets cores / parallel threads).
Prints each lr's final validation loss, the best, its neighbours, and one JSON line (and --json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def grid(start: float, stop: float) -> list[float]:
    """Half-decade points from start to stop (inclusive), rounded to 3 significant digits."""
    lo, hi = round(2 * math.log10(start)), round(2 * math.log10(stop))
    return [float(f"{10 ** (k / 2):.3g}") for k in range(lo, hi + 1)]


def train(lr: float, args, flags: list[str], tmp: Path, threads: int) -> float:
    out = tmp / f"lr-{lr:g}"
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "--preset",
        args.preset,
        *flags,
        "--data",
        str(args.data),
        "--lr",
        str(lr),
        "--max-iters",
        str(args.steps),
        "--eval-interval",
        str(args.steps),
        "--eval-tokens",
        "0",
        "--log-interval",
        str(max(args.steps // 10, 1)),
        "--device",
        args.device,
        "--out",
        str(out),
        "--force",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode == 3:  # the loss diverged: as bad as it gets
        return float("inf")
    if p.returncode != 0:
        raise SystemExit(f"lr {lr:g} failed:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["val_loss"] for r in rows if "val_loss" in r][-1]


def sweep(args, flags: list[str]) -> dict[float, float]:
    losses: dict[float, float] = {}
    todo = grid(args.lo, args.hi)
    threads = max((os.cpu_count() or 1) // args.parallel, 1)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.parallel) as pool:
        while todo:
            for lr, loss in zip(todo, pool.map(lambda lr: train(lr, args, flags, Path(tmp), threads), todo)):
                losses[lr] = loss
                print(f"  lr {lr:<8g} val loss {loss:.4f}", file=sys.stderr, flush=True)
            lrs = sorted(losses)
            best = min(lrs, key=losses.get)
            if best == lrs[0] and len(losses) < args.max_points:
                todo = [float(f"{best / math.sqrt(10):.3g}")]
            elif best == lrs[-1] and len(losses) < args.max_points and math.isfinite(losses[best]):
                todo = [float(f"{best * math.sqrt(10):.3g}")]
            else:
                todo = []
    return losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--name", required=True, help="a name for the shape in the output")
    ap.add_argument("--preset", default="seed")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lo", type=float, default=1e-3)
    ap.add_argument("--hi", type=float, default=1e-2)
    ap.add_argument("--max-points", type=int, default=9)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    args, flags = ap.parse_known_args()
    flags = [f for f in flags if f != "--"]
    from minigpt.config import make_config
    from minigpt.device import cpu_flags, cpu_name

    started = time.perf_counter()
    print(f"{args.name}: preset {args.preset} {' '.join(flags)}, {args.steps} steps", file=sys.stderr)
    losses = sweep(args, flags)
    lrs = sorted(losses)
    best = min(lrs, key=losses.get)
    i = lrs.index(best)
    shape = {
        k.lstrip("-").replace("-", "_"): int(v)
        for k, v in zip(flags[::2], flags[1::2])
        if k.lstrip("-").replace("-", "_") in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "grad_accum")
    }
    cfg = make_config(args.preset, **shape)
    result = {
        "bench": "lr_sweep",
        "name": args.name,
        "preset": args.preset,
        "flags": flags,
        "steps": args.steps,
        "n_layer": cfg.n_layer,
        "n_embd": cfg.n_embd,
        "block_size": cfg.block_size,
        "batch_tokens": cfg.tokens_per_step,
        "dataset": args.data.name,
        "losses": {f"{lr:g}": losses[lr] for lr in lrs},
        "best_lr": best,
        "best_loss": losses[best],
        "neighbours": {f"{lr:g}": losses[lr] for lr in lrs[max(i - 1, 0) : i + 2] if lr != best},
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
        "minutes": round((time.perf_counter() - started) / 60, 1),
    }
    print(
        f"{args.name}: best lr {best:g} (val loss {losses[best]:.4f}); "
        + ", ".join(f"{lr:g}: {losses[lr]:.4f}" for lr in lrs),
        file=sys.stderr,
    )
    print(json.dumps(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
