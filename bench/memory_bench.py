"""minigpt-train's memory estimate (minigpt/memory.py) against the measured peak, at several shapes.

    python bench/memory_bench.py [--data DIR] [--json FILE]

Each shape runs in a fresh process: the trainer is opened as minigpt-train opens it, the process's resident
memory is read before the first step, then a few steps and an evaluation run; the peak resident memory
(ru_maxrss) is read at the end; with --device cuda, torch.cuda.memory_allocated before and
max_memory_allocated at the end (not run yet: no GPU was lent). The estimate of the peak is the resident memory before the first step plus
the larger of memory.train_need and an evaluation batch's (memory.forward_need, beside the optimizer state and
gradients). The target: within 1.5x of the measured peak at every shape.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAPTOP = dict(n_layer=4, n_head=4, n_embd=128)
SHAPES = {  # name: (preset, overrides)
    "tiny": ("tiny", {}),
    "tiny T1024": ("tiny", dict(block_size=1024)),
    "tiny T4096": ("tiny", dict(block_size=4096)),
    "tiny T8192 B8": ("tiny", dict(block_size=8192, batch_size=8)),
    "4x128 T64 B12 dropout 0.2": ("seed", dict(LAPTOP, block_size=64, batch_size=12)),
    "4x128 T64 B96 dropout 0.2": ("seed", dict(LAPTOP, block_size=64, batch_size=96)),
    "4x128 T1024 B12 dropout 0": ("seed", dict(LAPTOP, block_size=1024, batch_size=12, dropout=0.0)),
    "4x128 T1024 B12 dropout 0.2": ("seed", dict(LAPTOP, block_size=1024, batch_size=12)),
    "seed B32": ("seed", dict(batch_size=32)),
    "seed T512 B16": ("seed", dict(block_size=512, batch_size=16)),
}

CHILD = """
import json, resource, sys, tempfile
from pathlib import Path
import torch
from minigpt import memory
from minigpt.config import make_config
from minigpt.distributed import Dist
from minigpt.trainer import Trainer
preset, overrides, data, device = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
cuda = device == "cuda"
T = make_config(preset, **overrides).block_size
cfg = make_config(preset, **{**overrides, "max_iters": 3, "eval_interval": 3, "log_interval": 1,
                              "eval_tokens": 64 * T, "device": device})
with tempfile.TemporaryDirectory() as tmp:
    t = Trainer(cfg, Dist(), torch.device(device), say=lambda *_: None, on_row=lambda row: None)
    t.open(Path(data), Path(tmp) / "run", resume=False, force=True, verify_data=False)
    t.prepare_step()
    before = torch.cuda.memory_allocated() if cuda else int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
    need = memory.train_need(t.model, cfg, t.optimizers, t.device, t.dtype)
    evaluating = memory.state_need(t.model, t.optimizers).total + memory.forward_need(t.model.config, t.eval_batch, cfg.block_size, t.dtype).total
    t.loop()
peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "need": max(need.total, evaluating), "train": need.total, "eval": evaluating,
                  "parts": need.parts, "peak": peak,
                  "eval_batch": t.eval_batch, "dtype": str(t.dtype)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "c4-1200")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--device", default="cpu", help="cpu (peak RSS) or cuda (torch.cuda.max_memory_allocated)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from cpu_bench import host as cpu_host  # the host as every CPU figure records it

    host = {**cpu_host(), "device": args.device}
    print(f"{host['cpu']} ({host['machine']}, {host['cores']} cores; flags: {' '.join(host['cpu_flags']) or 'none'})")
    rows = []
    for name in args.shapes.split(","):
        preset, overrides = SHAPES[name]
        p = subprocess.run(
            [sys.executable, "-c", CHILD, preset, json.dumps(overrides), str(args.data), args.device],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=3600,
        )
        if p.returncode:
            raise SystemExit(f"{name} failed:\n{p.stderr[-3000:]}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        estimate = r["before"] + r["need"]
        row = {"shape": name, **r, "estimate": estimate, "ratio": round(estimate / r["peak"], 3)}
        rows.append(row)
        mb = 2**20
        print(
            f"{name:28} before {r['before'] / mb:7,.0f} MB + need {r['need'] / mb:7,.0f} MB = {estimate / mb:7,.0f} MB"
            f"  peak {r['peak'] / mb:7,.0f} MB  estimate/peak {row['ratio']:.2f}",
            flush=True,
        )
    worst = max(max(r["ratio"], 1 / r["ratio"]) for r in rows)
    print(f"worst: {worst:.2f}x (target: within 1.5x)")
    result = {"host": host, "shapes": rows, "worst": worst}
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
