"""Model quality at equal compute: minigpt's default recipe against the old gpt.py's, and ablations.

    python bench/quality_bench.py --data data/prose-2000                      # the issue's CPU shape
    python bench/quality_bench.py --data data/prose-2000 --shape tiny
    python bench/quality_bench.py --data data/prose-2000 --variants default,no-muon,gelu --lrs 3e-3,1e-2
    python bench/quality_bench.py --data data/c4-bench-3000 --shape seed --device cuda --lrs 3e-4 ...

Every run trains on the same prepared dataset with the same dims, batch, number of steps and the same
batches (minigpt's keyed draw), at each peak learning rate of --lrs, and is scored by the loss over the
whole validation split (every non-overlapping window of block_size, nats per character). The default
recipe and its variants train through minigpt.trainer.train itself; `old` is bench/old_recipe.py.
A variant is the default recipe with one choice changed (VARIANTS below). Prints a table, each
variant's best, the default/old ratio, and one JSON line. Runs go --jobs at a time, one thread each.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SHAPES = {  # dims, context, batch and steps: equal compute for every recipe of a comparison
    "small": dict(n_embd=128, n_head=4, n_layer=4, block_size=64, batch_size=32, max_iters=400, dropout=0.0),
    "tiny": dict(n_embd=64, n_head=4, n_layer=2, block_size=32, batch_size=16, max_iters=200, dropout=0.0),
    "medium": dict(n_embd=192, n_head=6, n_layer=6, block_size=64, batch_size=32, max_iters=600, dropout=0.0),
    "seed": dict(n_embd=384, n_head=8, n_layer=8, block_size=64, batch_size=128, max_iters=5000, dropout=0.2),
}

# "default" is minigpt's TrainConfig defaults; "old" is gpt.py's recipe (bench/old_recipe.py). "v0" is
# minigpt 0.1's recipe (the train issue's choices), and each "v0+..." changes one thing in it.
V0 = dict(
    tie_weights=True,
    init="gpt2",
    mlp="gelu",
    pos="learned",
    qk_norm=False,
    bias=True,
    optimizer="adamw",
    schedule="cosine",
    warmup_iters=100,
    beta2=0.95,
    weight_decay=0.1,
    grad_clip=1.0,
)
VARIANTS: dict[str, dict] = {
    "default": {},
    "v0": V0,
    "v0+untied": {**V0, "tie_weights": False},
    "v0+init-torch": {**V0, "init": "torch"},
    "v0+untied+init-zero": {**V0, "tie_weights": False, "init": "zero"},
    "v0+wsd": {**V0, "schedule": "wsd"},
    "v0+constant-lr": {**V0, "schedule": "constant"},
    "v0+warmup-20": {**V0, "warmup_iters": 20},
    "v0+beta2-0.99": {**V0, "beta2": 0.99},
    "v0+no-weight-decay": {**V0, "weight_decay": 0.0},
    "v0+no-clip": {**V0, "grad_clip": 0.0},
    "v0+no-bias": {**V0, "bias": False},
    "v0+relu2": {**V0, "mlp": "relu2"},
    "v0+rope": {**V0, "pos": "rope"},
    "v0+qk-norm": {**V0, "qk_norm": True},
    "v0+muon": {**V0, "optimizer": "muon"},
    "v0+all": {
        **V0,
        "tie_weights": False,
        "init": "zero",
        "schedule": "wsd",
        "warmup_iters": 20,
        "mlp": "relu2",
        "pos": "rope",
        "qk_norm": True,
        "optimizer": "muon",
        "bias": False,
    },
}
ALL = VARIANTS["v0+all"]
VARIANTS.update(
    {  # each of v0+all's choices taken back, one at a time
        "all-tied": {**ALL, "tie_weights": True},
        "all-init-gpt2": {**ALL, "init": "gpt2"},
        "all-cosine": {**ALL, "schedule": "cosine"},
        "all-warmup-100": {**ALL, "warmup_iters": 100},
        "all-gelu": {**ALL, "mlp": "gelu"},
        "all-learned-pos": {**ALL, "pos": "learned"},
        "all-no-qk-norm": {**ALL, "qk_norm": False},
        "all-adamw": {**ALL, "optimizer": "adamw"},
        "all-bias": {**ALL, "bias": True},
    }
)


def evaluate(model, dataset, T: int, B: int, device: torch.device) -> float:
    """Mean loss over every non-overlapping validation window, as minigpt-train evaluates."""
    windows = dataset.eval_windows("val", T, 0, 0)
    model.eval()
    total = 0.0
    with torch.no_grad():
        for batch in dataset.eval_batches("val", windows, B, T):
            t = torch.from_numpy(batch).to(device)
            total += model(t[:, :-1], t[:, 1:])[1].item() * len(batch)
    return total / len(windows)


def one_run(job: dict) -> dict:
    torch.set_num_threads(job["threads"])
    from minigpt.data.loader import TokenData

    shape, lr, device = SHAPES[job["shape"]], job["lr"], torch.device(job["device"])
    dataset = TokenData(Path(job["data"]))
    start = time.perf_counter()
    if job["variant"] == "old":
        from old_recipe import train_old

        model = train_old(
            dataset,
            dataset.manifest["vocab_size"],
            shape["n_embd"],
            shape["n_head"],
            shape["n_layer"],
            shape["block_size"],
            shape["batch_size"],
            shape["max_iters"],
            lr,
            shape["dropout"],
            job["seed"],
            device,
            compile=job["compile"],
        )
        val = evaluate(model, dataset, shape["block_size"], shape["batch_size"], device)
    else:
        from minigpt.config import make_config
        from minigpt.trainer import train

        cfg = make_config(
            "seed",
            **shape,
            **VARIANTS[job["variant"]],
            lr=lr,
            seed=job["seed"],
            device=job["device"],
            eval_interval=shape["max_iters"],
            log_interval=shape["max_iters"],
            eval_tokens=0,
            compile=job["compile"],
        )
        with tempfile.TemporaryDirectory() as tmp:
            result = train(cfg, Path(job["data"]), Path(tmp) / "run", say=lambda *a: None, on_row=lambda r: None)
        val = result.best_val_loss
    return {**job, "val_loss": round(val, 5), "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--shape", choices=SHAPES, default="small")
    ap.add_argument("--variants", default="default,old", help="comma-separated names: old, " + ", ".join(VARIANTS))
    ap.add_argument("--lrs", default="1e-3,3e-3,1e-2", help="peak learning rates to sweep")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile minigpt's recipes (CUDA)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time (CPU: one thread each)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    names = args.variants.split(",")
    unknown = [n for n in names if n != "old" and n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: old, {', '.join(VARIANTS)}")
    lrs = [float(x) for x in args.lrs.split(",")]
    threads = 1 if args.device == "cpu" and args.jobs > 1 else torch.get_num_threads()
    jobs = [
        dict(
            variant=v,
            lr=lr,
            shape=args.shape,
            data=str(args.data),
            seed=args.seed,
            device=args.device,
            compile=args.compile,
            threads=threads,
        )
        for v in names
        for lr in lrs
    ]
    started = time.perf_counter()
    results = []

    def done(r: dict) -> None:
        results.append(r)
        print(
            f"  [{len(results)}/{len(jobs)}] {r['variant']} lr {r['lr']:g}: val {r['val_loss']:.4f} ({r['seconds']:.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            for r in pool.map(one_run, jobs):
                done(r)
    else:
        for j in jobs:
            done(one_run(j))

    best = {v: min((r for r in results if r["variant"] == v), key=lambda r: r["val_loss"]) for v in names}
    print(f"{args.shape} shape {SHAPES[args.shape]}, dataset {args.data.name}, val loss in nats/char:", file=sys.stderr)
    print(f"{'variant':24}" + "".join(f"{lr:>10.0e}" for lr in lrs) + f"{'best':>10}", file=sys.stderr)
    for v in names:
        row = {r["lr"]: r["val_loss"] for r in results if r["variant"] == v}
        print(f"{v:24}" + "".join(f"{row[lr]:>10.4f}" for lr in lrs) + f"{best[v]['val_loss']:>10.4f}", file=sys.stderr)
    out = {
        "bench": "quality",
        "date": time.strftime("%Y-%m-%d"),
        "shape": args.shape,
        "config": SHAPES[args.shape],
        "dataset": args.data.name,
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "lrs": lrs,
        "results": results,
        "best": {
            v: {"lr": b["lr"], "val_loss": b["val_loss"], "val_bpc": round(b["val_loss"] / math.log(2), 5)}
            for v, b in best.items()
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    if "default" in best and "old" in best:
        out["ratio_default_to_old"] = round(best["default"]["val_loss"] / best["old"]["val_loss"], 4)
        print(f"default/old best: {out['ratio_default_to_old']:.4f} (target <= 0.90)", file=sys.stderr)
    print(json.dumps(out))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
