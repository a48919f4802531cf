"""minigpt-plot: the curves of several runs overlaid, read from their metrics.jsonl (a run that is still
training is read as it stands), drawn with matplotlib's Agg backend (no display needed).

One colour per run; for a loss, the run's validation curve is the solid line with a dot at each
evaluation, its train loss (every log step) the thin line of the same colour.
"""

from __future__ import annotations

import math
from pathlib import Path

from .checkpoint import RUNS_DIR, RunFolder
from .errors import UserError
from .files import write_atomic

METRICS = ("val_loss", "train_loss", "val_bpc", "lr", "tokens_per_s")
XS = {"step": "step", "tokens": "tokens_seen", "time": "elapsed_s"}
LABELS = {
    "val_loss": "loss (nats/char)",
    "train_loss": "train loss (nats/char)",
    "val_bpc": "bits per character",
    "lr": "learning rate",
    "tokens_per_s": "tokens/s",
    "step": "step",
    "tokens": "tokens seen",
    "time": "training seconds",
}
FORMATS = (".png", ".svg", ".pdf")


def default_out(metric: str, x: str) -> Path:
    return RUNS_DIR / f"plot-{metric}-by-{x}.png"


def curves(rows: list[dict], metric: str, x: str) -> dict[str, tuple[list, list]]:
    """The (xs, ys) to draw for one run: the metric, and for a loss the train curve beside it."""
    key = XS[x]
    out = {}
    if metric in ("val_loss", "val_bpc"):
        scale = 1 / math.log(2) if metric == "val_bpc" else 1.0
        train = [r for r in rows if "train_loss" in r and key in r]
        out["train"] = ([r[key] for r in train], [r["train_loss"] * scale for r in train])
    picked = [r for r in rows if metric in r and key in r]
    out["val" if metric in ("val_loss", "val_bpc") else metric] = (
        [r[key] for r in picked],
        [r[metric] for r in picked],
    )
    return out


def plot(runs: list[Path], out: Path | None = None, x: str = "step", metric: str = "val_loss"):
    """Draw the runs' curves into `out` (PNG, SVG or PDF by its extension); the figure and the path."""
    if metric not in METRICS:
        raise UserError(f"--metric {metric}: choose one of {', '.join(METRICS)}", "e.g. --metric val_loss")
    if x not in XS:
        raise UserError(f"--x {x}: choose one of {', '.join(XS)}", "e.g. --x tokens")
    out = Path(out) if out is not None else default_out(metric, x)
    if out.suffix.lower() not in FORMATS:
        raise UserError(
            f"--out {out}: the file's extension says the format: {', '.join(FORMATS)}", "e.g. --out curves.svg"
        )
    if not runs:
        raise UserError("no run to plot", "name run folders: minigpt-plot runs/a runs/b")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, run in enumerate(runs):
        rows, _ = RunFolder(run).metrics()
        if not rows:
            plt.close(fig)
            raise UserError(f"{run} has no metrics.jsonl rows to plot", "is it a run folder? has it logged a step yet?")
        color = colors[i % len(colors)]
        for part, (xs, ys) in curves(rows, metric, x).items():
            label = f"{Path(run).name} {part}" if metric in ("val_loss", "val_bpc") else Path(run).name
            if part == "train":
                ax.plot(xs, ys, color=color, linewidth=0.8, alpha=0.45, label=label, gid=label)
            else:
                ax.plot(
                    xs,
                    ys,
                    color=color,
                    linewidth=1.8,
                    marker="o" if part == "val" else None,
                    markersize=3,
                    label=label,
                    gid=label,
                )
    ax.set_xlabel(LABELS[x])
    ax.set_ylabel(LABELS[metric])
    if metric == "lr":
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda tmp: fig.savefig(tmp, format=out.suffix[1:].lower()))
    return fig, out
