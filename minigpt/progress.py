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
    def docs(self, description: str, total: int) -> Iterator[Callable[[int, int], None]]:
        """Yields update(docs, text_bytes); shows documents, MB, docs/s, MB/s and ETA against `total`."""
        start, done = time.perf_counter(), [0, 0]
        if not self.enabled:
            def update(docs: int, nbytes: int) -> None:
                done[0] += docs
                done[1] += nbytes
            yield update
            dt = time.perf_counter() - start
            print(f"{description}: {done[0]:,} docs, {done[1] / 1e6:,.1f} MB in {dt:.1f} s "
                  f"({_rate(done[0], dt):,.0f} docs/s, {_rate(done[1], dt) / 1e6:,.1f} MB/s)", file=sys.stderr)
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("docs"),
                   TextColumn("{task.fields[mb]:,.1f} MB  {task.fields[docs_s]:,.0f} docs/s  {task.fields[mb_s]:,.1f} MB/s"),
                   TextColumn("ETA"), TimeRemainingColumn())
        with Bar(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task(description, total=total, mb=0.0, docs_s=0.0, mb_s=0.0)

            def update(docs: int, nbytes: int) -> None:
                done[0] += docs
                done[1] += nbytes
                dt = time.perf_counter() - start
                bar.update(task, completed=done[0], mb=done[1] / 1e6, docs_s=_rate(done[0], dt),
                           mb_s=_rate(done[1], dt) / 1e6)
            yield update

    def say(self, line: str) -> None:
        print(line, file=sys.stderr)
