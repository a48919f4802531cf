"""Benchmark one Muon step: torch.optim.Muon (a matrix at a time) against minigpt's batched Muon.

    python bench/muon_bench.py                      # the seed preset's 32 block matrices, CPU
    python bench/muon_bench.py --preset tiny
    python bench/muon_bench.py --device cuda

Both optimizers get the blocks' weight matrices of the preset's model (what make_optimizers gives
Muon) and the same fixed gradients; each step is timed alone (median of --steps, after warm-up), and
the operations one step dispatches are counted (views excluded): on a GPU each is a kernel launch,
which is what a step of small matrices pays for. Prints a line per optimizer, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minigpt.config import make_config  # noqa: E402
from minigpt.model import GPT, GPTConfig  # noqa: E402
from minigpt.optim import Muon  # noqa: E402
from minigpt.device import resolve_device  # noqa: E402

VIEWS = ("view", "alias", "detach", "expand", "select", "slice", "unbind", "transpose", "t.default", "as_strided")


class CountOps(TorchDispatchMode):
    """Counts the operations dispatched inside the block, views and other free ones left out."""

    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += not any(v in func.__name__ for v in VIEWS)
        return func(*args, **(kwargs or {}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="seed")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    device = resolve_device(args.device)
    cfg = make_config(args.preset)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def matrices():  # the preset's block matrices with fixed gradients, the same for both optimizers
        torch.manual_seed(0)
        model = GPT(GPTConfig.from_train(cfg, 200)).to(device)
        params = [p for n, p in model.named_parameters() if p.dim() == 2 and n.startswith("blocks.")]
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        return params

    kw = dict(lr=cfg.lr, weight_decay=cfg.weight_decay, adjust_lr_fn="match_rms_adamw")
    result = {
        "bench": "muon",
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "preset": args.preset,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
    }
    finals = []
    for name, make in (("torch.optim.Muon", torch.optim.Muon), ("minigpt Muon", Muon)):
        params = matrices()
        opt = make(params, **kw)
        for _ in range(3):
            opt.step()
        with CountOps() as count:
            opt.step()
        times = []
        for _ in range(args.steps):
            sync()
            start = time.perf_counter()
            opt.step()
            sync()
            times.append(time.perf_counter() - start)
        finals.append([p.detach().cpu() for p in params])
        ms = statistics.median(times) * 1e3
        result[name] = {"ms_per_step": round(ms, 3), "ops_per_step": count.ops}
        print(
            f"{name:18s} {ms:9.3f} ms/step  {count.ops:5d} operations/step  ({len(params)} matrices, {device.type})",
            file=sys.stderr,
        )
    result["same_weights_after"] = all(torch.equal(a, b) for a, b in zip(*finals))
    print(f"same weights after {4 + args.steps} steps: {result['same_weights_after']}", file=sys.stderr)
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
