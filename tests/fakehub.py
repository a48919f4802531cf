"""A fake Hugging Face Hub on 127.0.0.1 that serves a local folder as a dataset repo.

Test-support module (stdlib only). With ``HF_ENDPOINT=hub.url`` set *before* huggingface_hub is
imported (it reads the variable at import time, so use a subprocess), the unchanged call
``datasets.load_dataset("allenai/c4", "en", split="train", streaming=True)`` runs through the real
HfFileSystem/httpx code path against the folder written by ``tests/c4mirror.py``::

    with FakeHub(mirror_dir, fail_429=1) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp / "hf")}
        env.pop("HF_HUB_OFFLINE", None); env.pop("HF_DATASETS_OFFLINE", None)
        subprocess.run([...], env=env, check=True)
        assert hub.faults_served["429"] == 1

Served: ``HEAD|GET /datasets/{repo}/resolve/{rev}/{path}`` (200, or 206 for a Range), the repo info
``GET /api/datasets/{repo}[/revision/{rev}]``, ``GET /api/datasets/{repo}/tree/{rev}[/{path}]`` and
``POST /api/datasets/{repo}/paths-info/{rev}``. Anything else is 404. ``rev`` is "main" or ``hub.sha``.

Fault injection on *data-file GETs* (resolve GETs whose path contains ``data_substring``), in this
order: ``fail_429`` (first K answered 429 + ``Retry-After: 0``), ``fail_5xx`` (next K answered
``status_5xx``), then ``drop_at_byte`` (once: the first GET whose path contains
``drop_file_substring`` and whose range covers that absolute offset gets the body up to the offset,
then the socket is shut down). Setting any of these attributes re-arms it. Served faults are counted
in ``hub.faults_served`` (a Counter with keys "429", "5xx", "drop").
"""

from __future__ import annotations

import collections
import hashlib
import http.server
import json
import pathlib
import re
import socket
import threading
import urllib.parse

DEFAULT_SHA = "c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4"  # fixed fake commit id (40 hex)
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


class FakeHub:
    def __init__(
        self,
        root,
        repo_id: str = "allenai/c4",
        *,
        sha: str = DEFAULT_SHA,
        drop_at_byte: int | None = None,
        drop_file_substring: str = "c4-train",
        fail_429: int = 0,
        fail_5xx: int = 0,
        status_5xx: int = 503,
        retry_after: int = 0,
        data_substring: str = ".json.gz",
    ):
        self.root = pathlib.Path(root).resolve()
        self.repo_id, self.sha = repo_id, sha
        self.drop_file_substring, self.data_substring = drop_file_substring, data_substring
        self.status_5xx, self.retry_after = status_5xx, retry_after
        self.faults_served: collections.Counter = collections.Counter()
        self._lock = threading.Lock()
        self._left: dict[str, int] = {}  # faults still to serve, per setting
        self._requests: list[tuple[str, str, int]] = []
        self._oids: dict[tuple, str] = {}
        self._conns: set[socket.socket] = set()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.drop_at_byte, self.fail_429, self.fail_5xx = drop_at_byte, fail_429, fail_5xx
        # hold=True parks every data-file GET: `held` is set when one arrives, and it is answered once
        # `release` is set (or after 60 s), so a test can act on a client that is mid-stream.
        self.hold, self.held, self.release = False, threading.Event(), threading.Event()

    def __setattr__(self, name, value) -> None:
        # Assigning a fault setting (re-)arms it: its budget of faults still to serve is reset.
        super().__setattr__(name, value)
        if name in ("fail_429", "fail_5xx", "drop_at_byte"):
            with self._lock:
                self._left[name] = int(value is not None) if name == "drop_at_byte" else value

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "FakeHub not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """Snapshot of (method, path-with-query, status) for every request so far."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def start(self) -> "FakeHub":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.hub = self  # type: ignore[attr-defined]
        server.handle_error = lambda request, client_address: None  # client hang-ups are normal
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeHub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and any open keep-alive connections."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:  # wake handler threads blocked on idle keep-alive connections
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- repo content ----------------------------------------------------------------------------
    def _all_files(self) -> list[str]:
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(self.root).parts)
        )

    def _file(self, rel: str) -> pathlib.Path | None:
        p = (self.root / rel).resolve()
        return p if rel and p.is_file() and p.is_relative_to(self.root) else None

    def _oid(self, path: pathlib.Path) -> str:
        """git-blob-style sha1 of the content, cached by (path, size, mtime)."""
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            if key in self._oids:
                return self._oids[key]
        data = path.read_bytes()
        oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        with self._lock:
            self._oids[key] = oid
        return oid

    def _entry(self, rel: str) -> dict | None:
        if (f := self._file(rel)) is not None:
            return {"type": "file", "oid": self._oid(f), "size": f.stat().st_size, "path": rel}
        if rel and (self.root / rel).is_dir():
            return {"type": "directory", "oid": hashlib.sha1(rel.encode()).hexdigest(), "size": 0, "path": rel}
        return None

    def _tree(self, folder: str, recursive: bool) -> list[dict] | None:
        files = self._all_files()
        prefix = folder + "/" if folder else ""
        if folder and not any(f.startswith(prefix) for f in files):
            return None
        paths = set()
        for f in files:
            if not f.startswith(prefix):
                continue
            parts = f[len(prefix) :].split("/")
            stop = len(parts) if recursive else 1
            paths.update(prefix + "/".join(parts[: i + 1]) for i in range(stop))
        return [self._entry(p) for p in sorted(paths)]

    def _info(self) -> dict:
        return {
            "_id": "fakehub",
            "id": self.repo_id,
            "author": self.repo_id.split("/")[0],
            "sha": self.sha,
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "cardData": {},
            "lastModified": "2024-01-01T00:00:00.000Z",
            "createdAt": "2024-01-01T00:00:00.000Z",
            "siblings": [{"rfilename": f} for f in self._all_files()],
        }

    # -- fault decisions (called by the handler) -------------------------------------------------
    def _take_fault(self, rel: str) -> str | None:
        if self.data_substring not in rel:
            return None
        with self._lock:
            for kind in ("429", "5xx"):
                if self._left["fail_" + kind] > 0:
                    self._left["fail_" + kind] -= 1
                    self.faults_served[kind] += 1
                    return kind
        return None

    def _take_drop(self, rel: str, start: int, end: int) -> int | None:
        """Return the absolute offset to cut the body at, once, if [start, end] covers it."""
        with self._lock:
            d = self.drop_at_byte
            if self._left["drop_at_byte"] and self.drop_file_substring in rel and start <= d <= end:
                self._left["drop_at_byte"] = 0
                self.faults_served["drop"] += 1
                return d
        return None


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections end eventually even if stop() is never called
    server_version = "FakeHub/1.0"

    def log_message(self, *args) -> None:  # silence stderr logging
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.hub._lock:
            self.server.hub._conns.add(self.connection)

    def finish(self) -> None:
        with self.server.hub._lock:
            self.server.hub._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    # -- response helpers --------------------------------------------------------------------------
    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None, length: int | None = None) -> None:
        """Log the request and send status + headers, then ``body`` (not for HEAD)."""
        hub = self.server.hub
        with hub._lock:
            hub._requests.append((self.command, self.path, status))
        self.send_response(status)
        length = len(body) if length is None else length
        for k, v in {"Content-Length": str(length), "X-Repo-Commit": hub.sha, **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, obj) -> None:
        self._reply(200, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def _not_found(self, code: str = "EntryNotFound") -> None:
        self._reply(404, b"", {"X-Error-Code": code, "X-Error-Message": f"{code} (FakeHub)"})

    # -- routing -------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._route()

    do_HEAD = do_GET

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        self._body = self.rfile.read(n) if n else b""  # always drain the body (keep-alive)
        self._route()

    def _route(self) -> None:
        hub = self.server.hub
        url = urllib.parse.urlsplit(self.path)
        path, query = urllib.parse.unquote(url.path), urllib.parse.parse_qs(url.query)
        resolve, api = f"/datasets/{hub.repo_id}/resolve/", f"/api/datasets/{hub.repo_id}"
        revs = ("main", hub.sha)
        if path.startswith(resolve) and self.command in ("GET", "HEAD"):
            rev, _, rel = path[len(resolve) :].partition("/")
            return self._resolve(rel) if rev in revs else self._not_found("RevisionNotFound")
        if self.command == "GET" and (path == api or path in (f"{api}/revision/{r}" for r in revs)):
            return self._json(hub._info())
        if self.command == "GET" and path.startswith(f"{api}/revision/"):
            return self._not_found("RevisionNotFound")
        if self.command == "GET" and path.startswith(f"{api}/tree/"):
            rev, _, folder = path[len(f"{api}/tree/") :].partition("/")
            recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
            tree = hub._tree(folder.strip("/"), recursive) if rev in revs else None
            return self._not_found() if tree is None else self._json(tree)
        if self.command == "POST" and path in (f"{api}/paths-info/{r}" for r in revs):
            if "json" in (self.headers.get("Content-Type") or ""):
                paths = json.loads(self._body or b"{}").get("paths", [])
            else:
                paths = urllib.parse.parse_qs(self._body.decode()).get("paths", [])
            entries = (hub._entry(p.strip("/")) for p in ([paths] if isinstance(paths, str) else paths))
            return self._json([e for e in entries if e is not None])
        self._not_found("RepoNotFound" if path.startswith(("/api/", "/datasets/")) else "EntryNotFound")

    def _resolve(self, rel: str) -> None:
        hub = self.server.hub
        f = hub._file(rel)
        if f is None:
            return self._not_found()
        size = f.stat().st_size
        if self.command == "GET" and hub.hold and hub.data_substring in rel:
            hub.held.set()
            hub.release.wait(60)
        if self.command == "GET" and (fault := hub._take_fault(rel)) is not None:
            if fault == "429":  # huggingface_hub waits Retry-After + 1 s
                return self._reply(
                    429,
                    b'{"error": "Too Many Requests (FakeHub)"}',
                    {"Retry-After": str(hub.retry_after), "Content-Type": "application/json"},
                )
            return self._reply(
                hub.status_5xx, b'{"error": "Server error (FakeHub)"}', {"Content-Type": "application/json"}
            )
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{hub._oid(f)}"', "Content-Type": "application/octet-stream"}
        start, end, status = 0, size - 1, 200
        m = _RANGE_RE.match((self.headers.get("Range") or "").strip())
        if m and (m[1] or m[2]):  # anything unparsable is ignored -> full 200, as RFC 9110 allows
            if m[1]:
                start, end = int(m[1]), min(int(m[2]) if m[2] else size - 1, size - 1)
            else:  # suffix form bytes=-n
                start = max(size - int(m[2]), 0)
            if start >= size or start > end:
                return self._reply(416, b"", {"Content-Range": f"bytes */{size}"})
            status, headers["Content-Range"] = 206, f"bytes {start}-{end}/{size}"
        self._reply(status, headers=headers, length=end - start + 1)
        if self.command == "HEAD":
            return
        cut = hub._take_drop(rel, start, end)
        with open(f, "rb") as fh:
            fh.seek(start)
            left = (cut if cut is not None else end + 1) - start
            while left > 0 and (chunk := fh.read(min(left, 1 << 20))):
                self.wfile.write(chunk)
                left -= len(chunk)
        if cut is not None:  # abrupt disconnect mid-body: the client sees an incomplete message
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
