"""Progress display: a rich progress bar on a terminal, a plain line per phase in a pipe or a log."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator


def _rate(n: float, seconds: float) -> float:
    return n / seconds if seconds > 0 else 0.0


class Progress:
    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    @contextmanager
    def docs(self, description: str, total: int | None) -> Iterator[Callable[[int, int], None]]:
        """Yields update(docs, text_bytes); shows documents, MB, docs/s, MB/s and ETA against `total` (if known)."""
        start, done = time.perf_counter(), [0, 0]
        if not self.enabled:

            def update(docs: int, nbytes: int) -> None:
                done[0] += docs
                done[1] += nbytes

            yield update
            dt = time.perf_counter() - start
            print(
                f"{description}: {done[0]:,} docs, {done[1] / 1e6:,.1f} MB in {dt:.1f} s "
                f"({_rate(done[0], dt):,.0f} docs/s, {_rate(done[1], dt) / 1e6:,.1f} MB/s)",
                file=sys.stderr,
            )
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("docs"),
            TextColumn("{task.fields[mb]:,.1f} MB  {task.fields[docs_s]:,.0f} docs/s  {task.fields[mb_s]:,.1f} MB/s"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with Bar(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task(description, total=total, mb=0.0, docs_s=0.0, mb_s=0.0)

            def update(docs: int, nbytes: int) -> None:
                done[0] += docs
                done[1] += nbytes
                dt = time.perf_counter() - start
                bar.update(
                    task, completed=done[0], mb=done[1] / 1e6, docs_s=_rate(done[0], dt), mb_s=_rate(done[1], dt) / 1e6
                )

            yield update

    def say(self, line: str) -> None:
        print(line, file=sys.stderr)


def pace(tokens_per_step: int, tokens_per_s: float) -> str:
    """ "  12.3 s/step" where a step takes a second or more (a run that will take hours, said where one looks)."""
    per_step = tokens_per_step / tokens_per_s if tokens_per_s else 0.0
    return f"  {per_step:,.1f} s/step" if per_step >= 1 else ""


@contextmanager
def train_display(max_iters: int, line: Callable[[dict], str], enabled: bool | None = None, tokens_per_step: int = 0):
    """Yields (say, on_row) for the trainer: a bar (step, loss, lr, tok/s, s/step where a step takes a second
    or more, ETA) with evaluations printed above it on a terminal; one plain line per log row in a pipe."""
    if not (sys.stdout.isatty() if enabled is None else enabled):

        def say(text: str) -> None:
            print(text, flush=True)

        yield say, lambda row: say(line(row))
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

    console = Console()
    columns = (
        TextColumn("step"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn(
            "loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  {task.fields[tok_s]:,.0f} tok/s{task.fields[pace]}"
        ),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    bar = Bar(*columns, console=console)
    task = None

    def on_row(row: dict) -> None:  # the bar appears with the first logged step, not before checks pass
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("train", total=max_iters, loss=float("nan"), lr=0.0, tok_s=0.0, pace="")
        bar.update(
            task,
            completed=row["step"],
            loss=row["train_loss"],
            lr=row["lr"],
            tok_s=row["tokens_per_s"],
            pace=pace(tokens_per_step, row["tokens_per_s"]),
        )
        if "val_loss" in row:
            console.print(line(row))

    try:
        yield console.print, on_row
    finally:
        bar.stop()
