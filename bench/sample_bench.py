"""Benchmark minigpt-sample: tokens/s with the KV cache against recomputing the window every step.

    python bench/sample_bench.py                         # the seed preset, fresh weights, CPU
    python bench/sample_bench.py --block-size 256              # the seed preset's shape, a longer window
    python bench/sample_bench.py --run runs/c4-en-3000-seed --device cuda

Generates --new-tokens characters at batch 1, greedy, from the same weights: with the engine (KV
cache; on the CPU the decoding layout of engine.CPUDecodeLinear, on CUDA the step as a CUDA graph,
engine.GraphedDecode), the old script's way on the plain model (crop the context to block_size and run
the whole window through it for every new token), and the KV cache on the plain model, to show what
the layout or the graph adds. The methods take turns for --repeat rounds and the medians are
reported. Speed does not depend on what the weights learned, so without --run the model is the
preset's shape with its initial weights.
Prints a line per method, then one JSON line.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
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
    ap.add_argument("--repeat", type=int, default=3, help="rounds of all methods, interleaved; medians reported")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    if args.run:  # two copies of the weights: the engine's (CPU layout or CUDA graph) and the plain model
        engine = Engine.load(args.run, args.device)
        plain = Engine.load(args.run, args.device, cpu_layout=False, cuda_graph=False)
    else:
        torch.manual_seed(0)
        cfg = make_config(args.preset, block_size=args.block_size, dropout=0.0)
        model = GPT(GPTConfig.from_train(cfg, args.vocab_size))
        vocab = Vocab(["<eot>", "<unk>"] + [chr(32 + i) for i in range(args.vocab_size - 2)])
        device = resolve_device(args.device)
        model = model.to(device)
        engine = Engine(copy.deepcopy(model), vocab, device)
        plain = Engine(model, vocab, device, cpu_layout=False, cuda_graph=False)
    dev = engine.device
    # the old script's way runs the plain model; the cache is also timed on it (no CPU layout, no CUDA graph)
    methods = {"cache": (engine, True), "recompute": (plain, False), "cache_plain": (plain, True)}
    ids = [engine.vocab.eot]
    for eng, use_cache in methods.values():
        timed(eng, ids, 20, use_cache)  # warm-up: allocator, kernels
    times = {name: [] for name in methods}
    outputs = {}
    for _ in range(args.repeat):  # interleaved, so that a slow spell of a shared machine hits every method
        for name, (eng, use_cache) in methods.items():
            seconds, outputs[name] = timed(eng, ids, args.new_tokens, use_cache)
            times[name].append(seconds)
    median = {name: statistics.median(t) for name, t in times.items()}
    T = engine.model.config.block_size

    def agree(a: list[int], b: list[int]) -> int:
        return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), args.new_tokens)
    same = agree(outputs["cache"], outputs["recompute"])
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
    rate = {f"{k}_tokens_per_s": round(args.new_tokens / v, 1) for k, v in median.items()}
    result = {"bench": "sample", "date": time.strftime("%Y-%m-%d"), "device": name, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "model": engine.model.config.to_json(), "new_tokens": args.new_tokens,
              "repeat": args.repeat, **rate, "speedup": round(median["recompute"] / median["cache"], 2),
              "identical_tokens_before_divergence": same,
              "identical_to_plain_cache": agree(outputs["cache"], outputs["cache_plain"]), "block_size": T}
    print(f"{args.new_tokens} new tokens on {dev.type} ({name}), block_size {T}, batch 1, "
          f"median of {args.repeat}:", file=sys.stderr)
    plain_label = "KV cache, no CUDA graph" if dev.type == "cuda" else "KV cache, nn.Linear layout"
    labels = {"cache": "KV cache (engine)", "recompute": "recompute", "cache_plain": plain_label}
    for k in median:
        print(f"  {labels[k]:27s} {rate[k + '_tokens_per_s']:10,.1f} tok/s", file=sys.stderr)
    print(f"  speed-up {result['speedup']:.2f}x; greedy outputs identical for the first {same} tokens "
          f"(the window holds {T}; past it the cache slides by half windows)", file=sys.stderr)
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
