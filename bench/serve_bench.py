"""Benchmark minigpt-serve under load: 1, 4, 16 and 64 concurrent streaming clients on loopback.

    python bench/serve_bench.py --run runs/tiny                  # a run of the tiny preset, on the CPU
    python bench/serve_bench.py --run runs/tiny --device cuda    # where a GPU is lent
    python bench/serve_bench.py --data data/c4-500               # trains a tiny run first (seconds)

Starts the real server (`serve.py RUN --port 0`, minigpt-serve) in its own process and, from this one, opens the
clients at once: each streams one completion (--max-tokens characters, temperature 0.8, its own seed,
prompts of several lengths, so the rows sit at different positions), every count in turn for
--repeat rounds, the median round reported. For each number of clients:
total tokens/s (every client's tokens over the time from the first request to the last token), time
to first token and the gap per token (p50, p99), the speed-up over one client alone, and whether every
client got its solo text: what `Engine.generate` (minigpt-sample's text) gives for its prompt and seed.
The clients run on the same cores as the server, so their own work is part of what is measured.
Prints a line per count, then one JSON line (--json: also to a file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cpu_bench import host  # noqa: E402
from minigpt.engine import Engine  # noqa: E402

PROMPTS = ["", "The ", "In the morning, ", "Prices of the new homes in the city rose ", "We"]


def start_server(run: Path, device: str, batch: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, str(ROOT / "serve.py"), str(run), "--port", "0", "--device", device, "--batch", str(batch)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    found = re.search(r"at (http://\S+?)/ ", line)
    if not found:
        proc.kill()
        raise SystemExit(f"minigpt-serve did not start: {line}{proc.stderr.read()}")
    return proc, found.group(1)


async def client(http: httpx.AsyncClient, url: str, body: dict) -> dict:
    """One streaming completion: when it was sent, when each chunk came and how many tokens it held, the text."""
    sent, arrivals, text = time.perf_counter(), [], []
    async with http.stream("POST", f"{url}/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                continue
            piece = chunk["choices"][0]["text"]
            if piece:  # the last chunk may hold only the finish reason
                text.append(piece)
                arrivals.append((time.perf_counter(), len(piece)))
    return {"sent": sent, "arrivals": arrivals, "text": "".join(text)}


async def load(url: str, bodies: list[dict]) -> tuple[list[dict], float]:
    limits = httpx.Limits(max_connections=len(bodies) + 4, max_keepalive_connections=len(bodies) + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        start = time.perf_counter()
        results = await asyncio.gather(*(client(http, url, b) for b in bodies))
    return results, start


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def measure(url: str, model: str, clients: int, max_tokens: int, solo: dict) -> dict:
    bodies = [
        {
            "model": model,
            "prompt": PROMPTS[i % len(PROMPTS)],
            "max_tokens": max_tokens,
            "seed": i,
            "temperature": 0.8,
            "stream": True,
        }
        for i in range(clients)
    ]
    results, start = asyncio.run(load(url, bodies))
    end = max(r["arrivals"][-1][0] for r in results)
    tokens = sum(len(r["text"]) for r in results)  # one character per token (no <eot> at these lengths)
    ttft = [r["arrivals"][0][0] - r["sent"] for r in results]
    gaps = []
    for r in results:
        for (t0, _), (t1, n) in zip(r["arrivals"], r["arrivals"][1:]):
            gaps += [(t1 - t0) / n] * n  # a chunk of n tokens: its wait shared by its tokens
    same = sum(r["text"] == solo[(b["prompt"], b["seed"])] for r, b in zip(results, bodies))
    return {
        "clients": clients,
        "tokens": tokens,
        "seconds": end - start,
        "tokens_per_s": tokens / (end - start),
        "ttft_p50_ms": 1e3 * percentile(ttft, 0.5),
        "ttft_p99_ms": 1e3 * percentile(ttft, 0.99),
        "per_token_p50_ms": 1e3 * percentile(gaps, 0.5),
        "per_token_p99_ms": 1e3 * percentile(gaps, 0.99),
        "solo_text": same,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="run folder (default: a tiny run trained on --data first)")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "c4-500", help="dataset for the tiny run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clients", default="1,4,16,64", help="comma-separated counts")
    ap.add_argument("--max-tokens", type=int, default=400, help="characters per client")
    ap.add_argument("--repeat", type=int, default=5, help="rounds of every count; the median round is reported")
    ap.add_argument("--json", type=Path, help="also write the JSON here")
    args = ap.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "tiny"
            cmd = [
                sys.executable,
                str(ROOT / "train.py"),
                "--preset",
                "tiny",
                "--data",
                str(args.data),
                "--out",
                str(run),
            ]
            subprocess.run(cmd, check=True, capture_output=True)
        engine = Engine.load(run, args.device)
        solo = {
            (p, s): engine.generate(p, max_new_tokens=args.max_tokens, temperature=0.8, seed=s)
            for s in range(max(counts))
            for p in [PROMPTS[s % len(PROMPTS)]]
        }
        proc, url = start_server(run, args.device, max(counts))
        try:
            measure(url, run.name, 2, 20, solo)  # loads the model; its figures are left out
            rounds = {n: [] for n in counts}
            for _ in range(args.repeat):  # every count in turn, round after round: a slow spell hits all alike
                for n in counts:
                    rounds[n].append(measure(url, run.name, n, args.max_tokens, solo))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    rows = []
    for n in counts:
        row = sorted(rounds[n], key=lambda r: r["tokens_per_s"])[len(rounds[n]) // 2]
        row["solo_text"] = min(r["solo_text"] for r in rounds[n])  # the worst round
        row["rounds_tokens_per_s"] = [r["tokens_per_s"] for r in rounds[n]]
        rows.append(row)
    one = next((r["tokens_per_s"] for r in rows if r["clients"] == 1), None)
    ones = next((r["rounds_tokens_per_s"] for r in rows if r["clients"] == 1), None)
    for r in rows:
        r["speedup"] = r["tokens_per_s"] / one if one else None
        if ones:  # round by round, against the same round's one client
            r["rounds_speedup"] = [a / b for a, b in zip(r["rounds_tokens_per_s"], ones)]
        print(
            f"{r['clients']:>3} clients: {r['tokens_per_s']:8.0f} tok/s total"
            + (
                f" ({r['speedup']:.2f}x one client; rounds {min(r['rounds_speedup']):.2f}-{max(r['rounds_speedup']):.2f}x)"
                if one
                else ""
            )
            + f", first token p50 {r['ttft_p50_ms']:.1f} ms p99 {r['ttft_p99_ms']:.1f} ms,"
            f" per token p50 {r['per_token_p50_ms']:.2f} ms p99 {r['per_token_p99_ms']:.2f} ms,"
            f" solo text {r['solo_text']}/{r['clients']} (worst of {args.repeat} rounds)"
        )
    out = {
        "bench": "serve",
        "run": str(args.run or "tiny (trained)"),
        "device": args.device,
        "max_tokens": args.max_tokens,
        "host": host(),
        "rows": rows,
    }
    print(json.dumps(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
