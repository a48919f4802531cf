"""Benchmark minigpt-sample: tokens/s with the KV cache against recomputing the window every step.

    python bench/sample_bench.py                         # the seed preset, fresh weights, CPU
    python bench/sample_bench.py --block-size 256              # the seed preset's shape, a longer window
    python bench/sample_bench.py --run runs/c4-en-3000-seed --device cuda

Generates --new-tokens characters at batch 1 twice in the same process, greedy, from the same
weights: with the engine's KV cache, and the old script's way (crop the context to block_size and run
the whole window through the model for every new token). Speed does not depend on what the weights
learned, so without --run the model is the preset's shape with its initial weights.
Prints a line per method, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minigpt.config import make_config  # noqa: E402
from minigpt.engine import Engine, SamplingParams  # noqa: E402
from minigpt.model import GPT, GPTConfig  # noqa: E402
from minigpt.trainer import resolve_device  # noqa: E402
from minigpt.vocab import Vocab  # noqa: E402


def timed(engine: Engine, ids: list[int], n: int, use_cache: bool) -> tuple[float, list[int]]:
    gen = torch.Generator(device=engine.device).manual_seed(0)
    start = time.perf_counter()
    out = list(engine.stream(ids, n, SamplingParams(temperature=0.0), gen, use_cache=use_cache))
    if engine.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="a run folder (default: fresh weights of --preset)")
    ap.add_argument("--preset", default="seed")
    ap.add_argument("--vocab-size", type=int, default=200, help="without --run: vocabulary size")
    ap.add_argument("--block-size", type=int, help="without --run: override the preset's block_size")
    ap.add_argument("--new-tokens", type=int, default=1000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    if args.run:
        engine = Engine.load(args.run, args.device)
    else:
        torch.manual_seed(0)
        cfg = make_config(args.preset, block_size=args.block_size, dropout=0.0)
        model = GPT(GPTConfig.from_train(cfg, args.vocab_size))
        vocab = Vocab(["<eot>", "<unk>"] + [chr(32 + i) for i in range(args.vocab_size - 2)])
        device = resolve_device(args.device)
        engine = Engine(model.to(device), vocab, device)
    ids = [engine.vocab.eot]
    timed(engine, ids, 20, True)  # warm-up: allocator, kernels
    timed(engine, ids, 20, False)
    t_cache, out_cache = timed(engine, ids, args.new_tokens, True)
    t_full, out_full = timed(engine, ids, args.new_tokens, False)
    T = engine.model.config.block_size
    same = next((i for i, (a, b) in enumerate(zip(out_cache, out_full)) if a != b), len(out_cache))
    dev = engine.device
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
    result = {"bench": "sample", "date": time.strftime("%Y-%m-%d"), "device": name, "torch": torch.__version__,
              "model": engine.model.config.to_json(), "new_tokens": args.new_tokens,
              "cache_tokens_per_s": round(args.new_tokens / t_cache, 1),
              "recompute_tokens_per_s": round(args.new_tokens / t_full, 1), "speedup": round(t_full / t_cache, 2),
              "identical_tokens_before_divergence": same, "block_size": T}
    print(f"{args.new_tokens} new tokens on {dev.type} ({name}), block_size {T}, batch 1:", file=sys.stderr)
    print(f"  KV cache       {result['cache_tokens_per_s']:10,.1f} tok/s", file=sys.stderr)
    print(f"  recompute      {result['recompute_tokens_per_s']:10,.1f} tok/s", file=sys.stderr)
    print(f"  speed-up {result['speedup']:.2f}x; greedy outputs identical for the first {same} tokens "
          f"(the window holds {T}; past it the cache slides by half windows)", file=sys.stderr)
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
