"""Benchmark minigpt-sample: tokens/s with the KV cache against recomputing the window every step.

    python bench/sample_bench.py                         # the seed preset, fresh weights, CPU
    python bench/sample_bench.py --block-size 256        # the seed preset's shape, a longer window
    python bench/sample_bench.py --run runs/c4-en-3000-seed --device cuda

Generates --new-tokens characters at batch 1, greedy, from the same weights: with the engine (KV
cache; on the CPU the decoding layout and step, decode.CPUDecodeLinear and decode.CPUDecode, on CUDA
the step and the refill as CUDA graphs, decode.GraphedDecode), the old script's way on the plain model
(crop the context to block_size and run the whole window through it for every new token), the KV cache
on the plain model, to show what the layout or the graphs add, and the compiled step
(Engine(compile=True), what --compile runs: decode.CompiledDecode on the CPU, the compiled step inside
the graph on CUDA; the time its engine took to build, the compile included, is reported: inductor keeps
what it compiled on disk, so a machine's first compile takes longer than the next). The methods take
turns every --turn characters (a slow spell of the shared machine then hits all of them alike), for
--repeat rounds of --new-tokens each, and each method's median is reported. Speed does not depend on
what the weights learned, so without --run the model is the preset's shape with its initial weights.
Prints a line per method, then one JSON line.
"""

from __future__ import annotations

import argparse
import copy
import itertools
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
from minigpt.device import resolve_device  # noqa: E402
from minigpt.data.vocab import Vocab  # noqa: E402


def one_round(methods: dict, ids: list[int], n: int, turn: int) -> tuple[dict[str, float], dict[str, list[int]]]:
    """Every method generates n tokens, greedy, taking turns every `turn` tokens: each one's seconds and tokens."""
    streams, seconds, out = {}, {}, {}
    for name, (engine, use_cache) in methods.items():
        gen = torch.Generator(device=engine.device).manual_seed(0)
        streams[name] = engine.stream(ids, n, SamplingParams(temperature=0.0), gen, use_cache=use_cache)
        seconds[name], out[name] = 0.0, []
    while any(len(tokens) < n for tokens in out.values()):
        for name, stream in streams.items():
            start = time.perf_counter()
            out[name].extend(itertools.islice(stream, turn))  # int() of each token waits for the device
            seconds[name] += time.perf_counter() - start
    return seconds, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="a run folder (default: fresh weights of --preset)")
    ap.add_argument("--preset", default="seed")
    ap.add_argument("--vocab-size", type=int, default=200, help="without --run: vocabulary size")
    ap.add_argument("--block-size", type=int, help="without --run: override the preset's block_size")
    ap.add_argument("--new-tokens", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of all methods; medians reported")
    ap.add_argument("--turn", type=int, default=25, help="characters a method generates before the next takes its turn")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-compile", action="store_true", help="leave out the compiled step (Engine compile=True)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    if not args.run:
        torch.manual_seed(0)
        cfg = make_config(args.preset, block_size=args.block_size, dropout=0.0)
        model = GPT(GPTConfig.from_train(cfg, args.vocab_size)).to(resolve_device(args.device))
        vocab = Vocab(["<eot>", "<unk>"] + [chr(32 + i) for i in range(args.vocab_size - 2)])

    def make(**options) -> Engine:  # each engine its own copy of the weights (the layouts change them)
        if args.run:
            return Engine.load(args.run, args.device, **options)
        return Engine(copy.deepcopy(model), vocab, next(model.parameters()).device, **options)

    engine, plain = make(), make(cpu_layout=False, cuda_graph=False)
    dev = engine.device
    # the old script's way runs the plain model; the cache is also timed on it (no CPU layout, no CUDA graph)
    methods = {"cache": (engine, True), "recompute": (plain, False), "cache_plain": (plain, True)}
    if dev.type in ("cpu", "cuda") and not args.no_compile:
        start = time.perf_counter()
        methods["cache_compiled"] = (make(compile=True), True)  # compiles its step here
        compile_s = time.perf_counter() - start
    ids = [engine.vocab.eot]
    one_round(methods, ids, 20, 20)  # warm-up: allocator, kernels, the CUDA graph's capture
    times = {name: [] for name in methods}
    for _ in range(args.repeat):
        seconds, outputs = one_round(methods, ids, args.new_tokens, args.turn)
        for name in methods:
            times[name].append(seconds[name])
    median = {name: statistics.median(t) for name, t in times.items()}
    T = engine.model.config.block_size

    def agree(a: list[int], b: list[int]) -> int:
        return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), args.new_tokens)

    same = agree(outputs["cache"], outputs["recompute"])
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
    rate = {f"{k}_tokens_per_s": round(args.new_tokens / v, 1) for k, v in median.items()}
    result = {
        "bench": "sample",
        "date": time.strftime("%Y-%m-%d"),
        "device": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": engine.model.config.to_json(),
        "new_tokens": args.new_tokens,
        "repeat": args.repeat,
        "turn": args.turn,
        **rate,
        "speedup": round(median["recompute"] / median["cache"], 2),
        "identical_tokens_before_divergence": same,
        "identical_to_plain_cache": agree(outputs["cache"], outputs["cache_plain"]),
        "block_size": T,
    }
    if "cache_compiled" in median:
        result.update(
            speedup_compiled=round(median["recompute"] / median["cache_compiled"], 2),
            compiled_identical_tokens_before_divergence=agree(outputs["cache_compiled"], outputs["recompute"]),
            compile_s=round(compile_s, 1),
        )
    print(
        f"{args.new_tokens} new tokens on {dev.type} ({name}), block_size {T}, batch 1, "
        f"median of {args.repeat} rounds, taking turns every {args.turn}:",
        file=sys.stderr,
    )
    plain_label = "KV cache, no CUDA graph" if dev.type == "cuda" else "KV cache, nn.Linear layout"
    labels = {
        "cache": "KV cache (engine)",
        "recompute": "recompute",
        "cache_plain": plain_label,
        "cache_compiled": "KV cache, compiled step",
    }
    for k in median:
        print(f"  {labels[k]:27s} {rate[k + '_tokens_per_s']:10,.1f} tok/s", file=sys.stderr)
    print(
        f"  speed-up {result['speedup']:.2f}x; greedy outputs identical for the first {same} tokens "
        f"(the window holds {T}; past it the cache slides by half windows)",
        file=sys.stderr,
    )
    if "cache_compiled" in median:
        print(
            f"  compiled step: speed-up {result['speedup_compiled']:.2f}x, identical for the first "
            f"{result['compiled_identical_tokens_before_divergence']} tokens; built and compiled in "
            f"{result['compile_s']} s",
            file=sys.stderr,
        )
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
