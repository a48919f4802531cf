"""Small file helpers: atomic writes and hashes.

A file that is read back later is written under a temporary name in the same folder, flushed, and
renamed over the target, so a crash or Ctrl-C leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError


def write_atomic(path: Path, data: bytes | Callable[[Path], None]) -> None:
    """The one durable atomic write: `data` (bytes, or a function that writes the file it is given) goes
    to a unique temporary name in the same folder, is flushed to disk, renamed over `path`, and the
    folder's entry is flushed too. On any failure the temporary file is removed and `path` is untouched:
    a reader sees the old file or the new one, never part of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        if callable(data):
            data(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(data)
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def write_json_atomic(path: Path, obj) -> None:
    write_atomic(path, (json.dumps(obj, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fsync_path(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def folder_lock(target: Path, what: str):
    """One writer per output folder: an exclusive flock on `.NAME.lock` beside it, held while writing
    (the OS releases it when the process ends, however it ends). A second process gets one message
    naming the first one's pid. The lock file is removed on release; a process that opened it just
    before that sees another inode at the path and tries again."""
    target = Path(os.path.abspath(target))
    lock = target.parent / f".{target.name}.lock"
    while True:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(
                f"cannot write under {target.parent}: {e.strerror or e}",
                "check the permissions there, or choose another --out",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, holder = _holder(fd, what)
            os.close(fd)
            raise UserError(
                f"another {holder} (pid {pid}) is writing {target}", "wait for it to finish, or choose another --out"
            ) from None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {what}".encode())
    try:
        yield
    finally:
        try:
            os.unlink(lock)
        except OSError:
            pass
        os.close(fd)


def _holder(fd: int, what: str) -> tuple[str, str]:
    """(pid, command) as the lock's holder wrote them in its lock file; a lock file of an older minigpt
    holds the pid alone."""
    words = os.pread(fd, 200, 0).decode(errors="replace").split(maxsplit=1)
    return (words[0] if words else "unknown"), (words[1] if len(words) > 1 else what)


def lock_holder(target: Path) -> str | None:
    """The pid (as written) of the process holding a folder's lock (folder_lock), or None if none does."""
    target = Path(os.path.abspath(target))
    try:
        fd = os.open(target.parent / f".{target.name}.lock", os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return _holder(fd, "")[0]
    finally:
        os.close(fd)  # closing releases a shared lock taken by the probe
