"""Ctrl-C and SIGTERM: the first is the command's to handle (minigpt-train finishes its step and
checkpoints; the other commands unwind, removing what they half-wrote); a second exits at once, with a
line saying what on disk is kept.

"At once" holds while the main thread is inside one long operation (a step of hours), where no Python
signal handler runs until it returns: the signal's own C handler writes its number to a pipe
(signal.set_wakeup_fd), and a thread waiting on that pipe counts the signals and ends the process
(torch and numpy let other threads run during their long operations). `held()` defers both the first
signal and the exit across what must not be cut in two (minigpt-prepare's two renames).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager

from .errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
FIRST = "{signal}: stopping (Ctrl-C again to stop at once)"


class _Stops:
    def __init__(self):
        self.count = 0  # SIGINT/SIGTERM received by this command
        self.held = 0
        self.pending: int | None = None  # a first signal that came while held, raised on release
        self.kept = "nothing half-written was kept"  # what the at-once exit says is on disk
        self.first_note = FIRST  # said when the first signal arrives
        self.cond = threading.Condition()


_stops = _Stops()


def install() -> None:
    """Called by the CLI in the main thread before a command runs: the first signal raises Interrupted (unless
    the command installs its own handler), the watcher thread handles the second."""
    for sig in SIGNALS:
        signal.signal(sig, _first)
    try:
        r, w = os.pipe()
        os.set_blocking(w, False)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except (ValueError, OSError):  # not the main thread, or no pipes: second signals go to the handler
        return
    threading.Thread(target=_watch, args=(r,), daemon=True, name="minigpt-signals").start()


def _first(signum, frame) -> None:
    with _stops.cond:
        if _stops.held:
            _stops.pending = signum
            return
    raise Interrupted(signum)


def _watch(fd: int) -> None:
    while True:
        data = os.read(fd, 64)
        if not data:
            return
        for signum in data:
            if signum not in SIGNALS:
                continue
            with _stops.cond:
                _stops.count += 1
                if _stops.count == 1:
                    print(_stops.first_note.format(signal=signal.Signals(signum).name), file=sys.stderr, flush=True)
                    continue
                while _stops.held:  # a second signal inside held(): at its end
                    _stops.cond.wait()
                name = signal.Signals(signum).name
                print(f"minigpt: stopped at once by a second {name}; {_stops.kept}", file=sys.stderr, flush=True)
                os._exit(128 + signum)


def say_first(note: str | None) -> None:
    """What to say as the first signal arrives, before the command gets to act on it ({signal}: its name);
    None: the plain note again."""
    _stops.first_note = note or FIRST


def keep(what: str) -> None:
    """What an at-once exit leaves on disk, as the command goes along (minigpt-train: its last checkpoint)."""
    _stops.kept = what


@contextmanager
def held():
    """Neither a first signal's Interrupted nor a second's exit happens inside; both come at its end."""
    with _stops.cond:
        _stops.held += 1
    try:
        yield
    finally:
        with _stops.cond:
            _stops.held -= 1
            pending, _stops.pending = _stops.pending, None
            _stops.cond.notify_all()
        if pending is not None and not _stops.held:
            raise Interrupted(pending)
