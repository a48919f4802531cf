"""The picture in README.md: three tiny runs on one dataset, drawn by minigpt-plot.

    python bench/plot_example.py --data data/prose --out docs/plot-example.png

Trains `minigpt-train --preset tiny --max-iters 600` three ways (the default recipe, --optimizer adamw,
and --lr 3e-3) into a temporary folder, then runs `minigpt-plot` on them: what a user who compares
runs gets, not a picture drawn for the README.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"default": (), "adamw": ("--optimizer", "adamw"), "lr-3e-3": ("--lr", "3e-3")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "prose")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "plot-example.png")
    ap.add_argument("--max-iters", type=int, default=600)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for name, flags in VARIANTS.items():
            run = Path(tmp) / name
            subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "train.py"),
                    "--preset",
                    "tiny",
                    "--max-iters",
                    str(args.max_iters),
                    "--eval-interval",
                    "50",
                    "--data",
                    str(args.data),
                    "--out",
                    str(run),
                    *flags,
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            runs.append(str(run))
        subprocess.run([sys.executable, str(ROOT / "plot.py"), *runs, "--out", str(args.out)], check=True)
        subprocess.run([sys.executable, str(ROOT / "runs.py"), *runs], check=True)


if __name__ == "__main__":
    main()
