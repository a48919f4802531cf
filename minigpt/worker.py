"""The decoding process of one served model: its Scheduler in a loop, fed and read through a pipe.

Decoding runs in a process of its own so that it never waits for the server's Python (the HTTP side:
parsing, JSON, the event loop) to hand back the interpreter lock, and the server never waits for it:
on a 2-core machine the step runs on one core while the other serves the clients (BENCHMARKS.md,
minigpt-serve). The server sends jobs and cancellations; after each step the process sends back, in
one message, every event the step made.
"""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable

from .errors import UserError, brief

# a job as it crosses the pipe: ids, max_new_tokens, (temperature, top_k, top_p), seed, n, stop_at_eot, stop
Spec = tuple


class QueueFull(Exception):
    """Every slot is busy and the queue of waiting requests is full: the caller should try again later."""


def main(conn, path: str, device: str, slots: int, threads: int) -> None:
    """The process: load the run, say ready (or why not), then decode until told to close or the server is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle; it closes this process
    import torch

    from .engine import Engine, SamplingParams
    from .scheduler import Job, Scheduler

    try:  # the CPU layout is cut for the machine's thread count, as minigpt-sample's is: the same logits
        engine = Engine.load(path, device)
    except UserError as e:
        return conn.send(("failed", str(e)))
    except Exception as e:
        return conn.send(("failed", brief(e)))
    torch.set_num_threads(threads)  # then this process's own: a step costs mostly its dispatch
    scheduler, jobs, out = Scheduler(engine, slots), {}, []
    conn.send(("ready", None))
    while True:
        while scheduler.idle or conn.poll():  # idle: wait for the next message; else take what has come
            try:
                message = conn.recv()
            except (EOFError, OSError):  # the server is gone
                return
            if message[0] == "close":
                return
            if message[0] == "job":
                _, i, (ids, max_new, params, seed, n, stop_at_eot, stop) = message
                jobs[i] = Job(
                    ids, max_new, SamplingParams(*params), seed, lambda e, i=i: out.append((i, e)), n, stop_at_eot, stop
                )
                scheduler.add(jobs[i])
            elif message[0] == "cancel" and message[1] in jobs:
                jobs.pop(message[1]).cancelled = True
        scheduler.run_once()
        if out:
            for i, event in out:
                if event[0] in ("done", "error"):
                    jobs.pop(i, None)
            conn.send(out)
            out = []


class DecodeProcess:
    """The server's handle on a model's decoding process: submit and cancel jobs; events come back to
    `post`, called with [(receiver, event), ...] for each step's events, on a reader thread."""

    def __init__(self, path: Path, device: str, slots: int, queue: int, threads: int, post: Callable[[list], None]):
        # its own interpreter (python -m minigpt.worker), not multiprocessing's spawn, which would run the
        # caller's main module again in the child
        ours, theirs = socket.socketpair()
        command = [
            sys.executable,
            "-m",
            "minigpt.worker",
            str(theirs.fileno()),
            str(path),
            device,
            str(slots),
            str(threads),
        ]
        self.process = subprocess.Popen(command, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        self.conn = Connection(ours.detach())
        try:
            kind, detail = self.conn.recv()
        except (EOFError, OSError):
            kind, detail = "failed", f"its decoding process ended while loading (exit code {self.process.wait()})"
        if kind == "failed":
            self.process.wait(timeout=10)
            raise UserError(detail)
        self.slots, self.capacity, self.post = slots, slots + queue, post
        self.receivers: dict[int, object] = {}
        self.ids, self.lock, self.alive = itertools.count(), threading.Lock(), True
        threading.Thread(target=self._read, daemon=True, name=f"minigpt-read {path.name}").start()

    def submit(self, spec: Spec, receiver) -> int:
        with self.lock:
            if len(self.receivers) >= self.capacity:
                raise QueueFull(f"{len(self.receivers)} requests are being decoded or waiting")
            i = next(self.ids)
            self.receivers[i] = receiver
            self.conn.send(("job", i, spec))
        return i

    def cancel(self, i: int) -> None:
        with self.lock:
            if self.receivers.pop(i, None) is not None and self.alive:
                self.conn.send(("cancel", i))

    def busy(self) -> dict:
        n = len(self.receivers)
        return {"active": min(n, self.slots), "waiting": max(0, n - self.slots), "slots": self.slots}

    def _read(self) -> None:
        while True:
            try:
                events = self.conn.recv()
            except (EOFError, OSError):
                break
            with self.lock:
                sent = [(self.receivers.get(i), e) for i, e in events]
                for i, e in events:
                    if e[0] in ("done", "error"):
                        self.receivers.pop(i, None)
            self.post([(r, e) for r, e in sent if r is not None])
        with self.lock:  # the process ended: every job still open is told
            self.alive, left, self.receivers = False, list(self.receivers.values()), {}
        code = self.process.wait()
        self.post([(r, ("error", f"the decoding process ended (exit code {code})")) for r in left])

    def close(self) -> None:
        with self.lock:
            if self.alive:
                try:
                    self.conn.send(("close",))
                except OSError:
                    pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


if __name__ == "__main__":  # python -m minigpt.worker FD RUN DEVICE SLOTS THREADS (DecodeProcess starts it)
    fd, run, device, slots, threads = sys.argv[1:]
    main(Connection(int(fd)), run, device, int(slots), int(threads))
