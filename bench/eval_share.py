"""The share of a CPU run's time spent evaluating, before and after the CPU rule for --eval-tokens
(config.eval_rule), at the tiny, 4 x 128 and seed shapes; and the cost ratio the rule assumes.

    python bench/eval_share.py [--data DIR] [--shapes tiny,laptop,seed] [--json FILE]

Per shape, whole `train.py` runs in fresh processes, the figures read from their summary line ("... in X s
(evaluation and checkpoints Y s)"):
  1. two short runs that differ only in --eval-tokens: the step's time, and what one more evaluated token
     costs (their difference, so checkpoints cancel out); their ratio per token is CPU_EVAL_COST's measure;
  2. from those, the share of the shape's whole default run (its preset's --max-iters and --eval-interval)
     spent evaluating with the old default budget (the preset's: 16,384 at tiny, 1,000,000 elsewhere) and
     with the rule's;
  3. one real run under the rule, at a schedule short enough to run here, its share measured directly.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minigpt.config import CPU_EVAL_COST, EVAL_SHARE, eval_rule, make_config  # noqa: E402
from cpu_bench import host as cpu_host  # noqa: E402 (the host as every CPU figure records it)

# shape: (flags, the cost runs' steps and their two budgets, the real rule run's steps and interval)
SHAPES = {
    "tiny": (["--preset", "tiny"], 60, (4096, 65536), (200, 50)),
    "laptop": (
        ["--n-layer", "4", "--n-head", "4", "--n-embd", "128", "--block-size", "64", "--batch-size", "12"],
        30,
        (4096, 65536),
        (500, 250),
    ),
    "seed": (["--preset", "seed"], 4, (4096, 32768), (20, 10)),
}
SUMMARY = re.compile(r"([\d,]+) tokens in ([\d.]+) s \(evaluation and checkpoints ([\d.]+) s\)")


def run(flags: list[str], data: Path, out: Path) -> tuple[float, float, str]:
    """One whole run: (seconds, of which evaluating and checkpointing, its start-up line on evaluation)."""
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            *flags,
            "--device",
            "cpu",
            "--data",
            str(data),
            "--out",
            str(out),
            "--force",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=7200,
    )
    if p.returncode:
        raise SystemExit(f"train.py {' '.join(flags)} failed:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    found = SUMMARY.search(p.stdout)
    said = next((line for line in p.stdout.splitlines() if line.startswith("evaluation every")), "")
    return float(found.group(2)), float(found.group(3)), said


def measure(name: str, data: Path, tmp: Path) -> dict:
    flags, steps, (small, big), (rule_steps, rule_interval) = SHAPES[name]
    timed = [*flags, "--max-iters", str(steps), "--eval-interval", str(steps)]
    s_small, e_small, _ = run([*timed, "--eval-tokens", str(small)], data, tmp / "a")
    s_big, e_big, _ = run([*timed, "--eval-tokens", str(big)], data, tmp / "b")
    step_s = (s_small - e_small) / steps
    eval_token_s = (e_big - e_small) / (2 * (big - small))  # val and train, one evaluation each
    cfg = make_config(
        *(["tiny"] if name == "tiny" else ["seed"]),
        **({} if name in ("tiny", "seed") else dict(n_layer=4, n_head=4, n_embd=128, batch_size=12)),
    )
    cost = eval_token_s / (step_s / cfg.tokens_per_step)
    evals = -(-cfg.max_iters // cfg.eval_interval)

    def share(budget: int) -> float:
        evaluating = evals * 2 * budget * eval_token_s
        return evaluating / (evaluating + cfg.max_iters * step_s)

    old = 16_384 if name == "tiny" else 1_000_000
    rule = eval_rule(cfg)
    seconds, evaluating, said = run(
        [*flags, "--max-iters", str(rule_steps), "--eval-interval", str(rule_interval)], data, tmp / "rule"
    )
    row = {
        "shape": name,
        "tokens_per_step": cfg.tokens_per_step,
        "step_ms": round(step_s * 1e3, 2),
        "eval_us_per_token": round(eval_token_s * 1e6, 3),
        "eval_cost_per_token": round(cost, 3),
        "default_run": {"max_iters": cfg.max_iters, "eval_interval": cfg.eval_interval, "evaluations": evals},
        "old_budget": old,
        "old_share": round(share(old), 4),
        "old_eval_minutes": round(evals * 2 * old * eval_token_s / 60, 1),
        "rule_budget": rule,
        "rule_share": round(share(rule), 4),
        "rule_run": {
            "max_iters": rule_steps,
            "eval_interval": rule_interval,
            "seconds": seconds,
            "evaluating_s": evaluating,
            "share": round(evaluating / seconds, 4),
            "said": said,
        },
    }
    print(
        f"{name}: step {row['step_ms']} ms ({cfg.tokens_per_step} tokens), evaluation {row['eval_us_per_token']} us "
        f"a token: {cost:.3f} of a trained token's time (the rule assumes {CPU_EVAL_COST})\n"
        f"  default run ({cfg.max_iters} steps, evaluation every {cfg.eval_interval}): old budget {old:,} -> "
        f"{share(old):.1%} of its time evaluating ({row['old_eval_minutes']} min); the rule's {rule:,} -> {share(rule):.1%}\n"
        f"  a real run under the rule ({rule_steps} steps, every {rule_interval}): {evaluating:.1f} of {seconds:.1f} s "
        f"evaluating and checkpointing ({evaluating / seconds:.1%})\n  {said}",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "c4-500")
    ap.add_argument("--shapes", default="tiny,laptop,seed")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    host = {**cpu_host(), "eval_share": EVAL_SHARE, "cpu_eval_cost": CPU_EVAL_COST}
    print(f"{host['cpu']} ({host['machine']}, {host['cores']} cores; flags: {' '.join(host['cpu_flags']) or 'none'})")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(name, args.data, Path(tmp)) for name in args.shapes.split(",")]
    result = {"host": host, "shapes": rows}
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
