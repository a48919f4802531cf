"""What a loss.png refreshed at every evaluation would cost a run: minigpt-plot's drawing of one run's
curves, timed cold (first call in a process: the matplotlib import included) and warm (every later
call), against the run's own seconds per evaluation interval from its metrics.jsonl.

    python bench/plot_cost.py RUN [RUN ...] [--repeat 10] [--json FILE]

The issue's rule: refresh loss.png during training only if that costs under 1% of the run's time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cold_seconds(run: Path, out: Path) -> float:
    """One plot in a fresh interpreter, the import of minigpt.plot and matplotlib included."""
    code = (
        "import sys, time; t = time.perf_counter(); from minigpt.plot import plot; "
        f"plot([{str(run)!r}], {str(out)!r}); print(time.perf_counter() - t)"
    )
    return float(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.split()[-1]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=lambda p: Path(p).resolve())
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from minigpt.checkpoint import RunFolder
    from minigpt.plot import plot

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "loss.png"
        for run in args.runs:
            rows, _ = RunFolder(run).metrics()
            config = json.loads((run / "config.json").read_text())
            evals = sum("val_loss" in r for r in rows)
            seconds = rows[-1]["elapsed_s"]
            cold = cold_seconds(run, out)
            warm = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                fig, _ = plot([run], out)
                warm.append(time.perf_counter() - t)
                import matplotlib.pyplot as plt

                plt.close(fig)
            w = statistics.median(warm)
            share = (cold + (evals - 1) * w) / seconds
            row = {
                "run": str(run),
                "preset": config["train"]["preset"],
                "train_seconds": seconds,
                "evaluations": evals,
                "cold_s": round(cold, 3),
                "warm_s": round(w, 4),
                "share_of_run": round(share, 4),
            }
            results.append(row)
            print(
                f"{run}: {seconds:.1f} s of training, {evals} evaluations; a plot costs {cold:.2f} s cold, "
                f"{w * 1e3:.0f} ms warm: {share:.1%} of the run"
            )
    print(json.dumps({"bench": "plot_cost", "date": time.strftime("%Y-%m-%d"), "runs": results}))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
