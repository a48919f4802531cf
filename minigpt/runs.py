"""minigpt-runs: every run folder in one table, read from what the folders hold (config.json,
metrics.jsonl, the checkpoint's step, the folder's lock). A folder that cannot be read is a row that
says so."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .checkpoint import CONFIG, METRICS, RUNS_DIR, STATE, RunFolder, read_config
from .errors import UserError
from .files import lock_holder

SORTS = ("best", "time", "name")


@dataclass
class RunRow:
    name: str
    path: str
    state: str  # finished, stopped at step S, running, no checkpoint yet, damaged (why)
    dataset: str | None = None
    preset: str | None = None
    shape: str | None = None  # n_layer x n_embd, heads, block
    params: int | None = None
    step: int | None = None  # steps logged
    max_iters: int | None = None
    best_val_loss: float | None = None
    best_val_bpc: float | None = None
    tokens_seen: int | None = None
    train_seconds: float | None = None
    tokens_per_s: float | None = None
    init_from: str | None = None  # the run whose weights it started from; None: from scratch
    modified: float = 0.0  # for --sort time

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "modified"}


def run_folders(paths: list[Path] | None) -> list[Path]:
    """The folders given (a folder of runs stands for the runs in it), or every run under runs/."""
    found = []
    for p in paths or [RUNS_DIR]:
        p = Path(p)
        if (p / CONFIG).is_file() or (p / METRICS).is_file() or (paths and not p.is_dir()):
            found.append(p)
        elif p.is_dir():
            found += sorted(q for q in p.iterdir() if q.is_dir() and not q.name.startswith("."))
    if paths is None and not found:
        raise UserError(
            f"no runs under {RUNS_DIR.resolve()}", "train one first (minigpt-train --preset tiny), or name run folders"
        )
    return found


def read_run(path: Path) -> RunRow:
    """One row; never raises for a folder that cannot be read (its state says why)."""
    row = RunRow(path.name, str(path), "damaged")
    try:
        row.modified = max((f.stat().st_mtime for f in path.iterdir() if f.is_file()), default=0.0)
        config = read_config(path)
        model, train = config["model"], config["train"]
        rows, _ = RunFolder(path).metrics()
    except FileNotFoundError as e:
        row.state = (
            f"damaged ({Path(e.filename or '').name or 'a file'} missing)"
            if path.is_dir()
            else "damaged (no such folder)"
        )
        return row
    except (OSError, ValueError, KeyError, TypeError, UserError) as e:
        said = str(e).splitlines()[0].replace(f"{path}{os.sep}", "") if str(e) else ""
        row.state = (
            f"damaged ({said[:100]})" if isinstance(e, UserError) else f"damaged ({type(e).__name__}: {said[:80]})"
        )
        return row
    row.dataset = Path(config.get("dataset", {}).get("folder", "")).name or None
    row.preset, row.max_iters = train.get("preset"), train.get("max_iters")
    row.shape = (
        f"{model.get('n_layer')}x{model.get('n_embd')}, {model.get('n_head')} heads, block {model.get('block_size')}"
    )
    row.params = config.get("params") or _count_params(model)
    row.init_from = (config.get("init_from") or {}).get("run")
    if rows:
        last, vals = rows[-1], [r["val_loss"] for r in rows if "val_loss" in r]
        row.step, row.tokens_seen, row.train_seconds = last.get("step"), last.get("tokens_seen"), _seconds(rows)
        if vals:
            row.best_val_loss = min(vals)
            row.best_val_bpc = row.best_val_loss / math.log(2)
        if row.tokens_seen and row.train_seconds:
            row.tokens_per_s = round(row.tokens_seen / row.train_seconds, 1)
    row.state = _state(path, row)
    return row


def _seconds(rows: list[dict]) -> float:
    """Training time over every stretch of a run: elapsed_s starts again from 0 at each --resume, and a
    row's clock_from says at which step its stretch began (rows written before that field: a clock that
    went back marks a new stretch; one slower to its first row than the last stretch was would not)."""
    total, prev, clock = 0.0, 0.0, None
    for r in rows:
        e = r.get("elapsed_s", prev)
        if ("clock_from" in r and r["clock_from"] != clock) or ("clock_from" not in r and e < prev):
            total += prev
        clock, prev = r.get("clock_from", clock), e
    return round(total + prev, 3)


def _count_params(model: dict) -> int | None:
    """For runs whose config.json predates `params`: the model built on the meta device (no memory)."""
    import torch

    from .model import GPT, GPTConfig

    try:
        with torch.device("meta"):
            return GPT(GPTConfig(**model)).num_params()
    except (TypeError, ValueError, RuntimeError):
        return None


def _state(path: Path, row: RunRow) -> str:
    if lock_holder(path) is not None:
        return "running"
    progress = RunFolder(path).saved_progress()
    if progress is None:
        return "damaged (train_state.pt unreadable)" if (path / STATE).exists() else "no checkpoint yet"
    step = progress[0]
    row.step = max(row.step or 0, step)  # a stop by a signal checkpoints a step that no metrics row may have logged
    if row.max_iters is not None and step >= row.max_iters:
        return "finished"
    return f"stopped at step {step}"


def sort_rows(rows: list[RunRow], by: str) -> list[RunRow]:
    if by not in SORTS:
        raise UserError(f"--sort {by}: choose one of {', '.join(SORTS)}", "best (lowest val loss first), time or name")
    if by == "best":
        return sorted(rows, key=lambda r: (r.best_val_loss is None, r.best_val_loss or 0.0, r.name))
    if by == "time":
        return sorted(rows, key=lambda r: -r.modified)
    return sorted(rows, key=lambda r: r.name)


COLUMNS = (
    "name",
    "state",
    "dataset",
    "preset",
    "shape",
    "params",
    "steps",
    "best val",
    "bpc",
    "tokens",
    "time",
    "tok/s",
    "from",
)


def cells(r: RunRow) -> list[str]:
    """The row as table cells."""

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    steps = "-" if r.step is None else f"{r.step:,}/{r.max_iters:,}" if r.max_iters else f"{r.step:,}"
    params = "-" if r.params is None else f"{r.params / 1e6:.2f}M"
    return [
        r.name,
        r.state,
        r.dataset or "-",
        r.preset or "-",
        r.shape or "-",
        params,
        steps,
        num(r.best_val_loss, ".4f"),
        num(r.best_val_bpc, ".3f"),
        num(r.tokens_seen, ","),
        "-" if r.train_seconds is None else f"{r.train_seconds:.1f} s",
        num(r.tokens_per_s, ",.0f"),
        Path(r.init_from).name if r.init_from else "scratch",
    ]
