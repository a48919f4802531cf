"""Shared fixtures: C4-shaped corpora built in the tests, and ways to run minigpt-prepare.

Nothing here reaches a network: local runs set HF_HUB_OFFLINE, and hub runs go to a FakeHub on
127.0.0.1 through HF_ENDPOINT, in a subprocess (huggingface_hub reads HF_ENDPOINT at import).
"""

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

# Before anything imports datasets: no hub, and caches in a throwaway folder.
_HF_HOME = tempfile.mkdtemp(prefix="minigpt-hf-home-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("HF_ENDPOINT", None)

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from c4mirror import make_docs, write_c4_mirror  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# Property tests: a fixed, bounded profile by default (CI), the same examples every run; `HYPOTHESIS_PROFILE=deep`
# searches ten times as many, at random. Each example makes its own temporary folders, so the
# function-scoped fixtures (the autouse working folder) are shared by its examples without harm.
_QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci", max_examples=40, derandomize=True, database=None, deadline=None, suppress_health_check=_QUIET, print_blob=True
)
settings.register_profile("deep", max_examples=400, deadline=None, suppress_health_check=_QUIET, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


class Ran:
    def __init__(self, code: int, stdout: str, stderr: str):
        self.code, self.stdout, self.stderr = code, stdout, stderr

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def invoke(app, *args):
    """A minigpt command (a typer app of minigpt.cli) in this process; a bug's exception is re-raised."""
    r = CliRunner().invoke(app, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r


def run_inprocess(*args: str) -> Ran:
    """minigpt-prepare in this process (local sources only)."""
    from minigpt.cli import prepare_app

    r = invoke(prepare_app, *args)
    return Ran(r.exit_code, r.stdout, r.stderr)


def metrics(run: Path) -> list[dict]:
    """A run folder's metrics.jsonl, one dict per line."""
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def hub_env(hub_url: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env["HF_HOME"] = tempfile.mkdtemp(dir=_HF_HOME)  # fresh: the fake hub's fixed commit is never cached
    if hub_url:
        env["HF_ENDPOINT"] = hub_url
    return env


def run_subprocess(
    *args: str, env: dict | None = None, cwd: Path | None = None, script: list[str] | None = None
) -> Ran:
    """minigpt-prepare as a user runs it: `python prepare.py ...` unless `script` says otherwise."""
    cmd = (script or [sys.executable, str(ROOT / "prepare.py")]) + [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env or os.environ.copy(), cwd=cwd, timeout=300)
    return Ran(p.returncode, p.stdout, p.stderr)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Every test runs in its own folder, so a default --out (data/...) never lands in the repo."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def mirror(tmp_path) -> Path:
    """A small hub-shaped C4 folder: 2 train files of 60 docs, 1 validation file of 20.

    Train doc 99 has two characters found nowhere else (☃, Ω), validation doc 3 two found nowhere in
    train (☂, ß): both end up as <unk> under any --min-count above 1.
    """
    rare = {
        "text": "A rare snowman \u2603 and \u03a9mega.",
        "timestamp": "2019-04-25T12:57:54Z",
        "url": "https://rare.example/1",
    }
    train_b = make_docs(60, seed=2, start=60)
    train_b[39] = rare
    val = make_docs(20, seed=3, start=1000)
    val[3] = {**rare, "text": "Umbrella \u2602 stra\u00dfe.", "url": "https://rare.example/2"}
    train = [make_docs(60, seed=1, start=0), train_b]
    return write_c4_mirror(tmp_path / "mirror", train, [val])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A prepared dataset of ~120 short documents, train in shards of 8,000 tokens."""
    root = tmp_path_factory.mktemp("train-data")
    mirror = write_c4_mirror(root / "mirror", [make_docs(150, seed=11)], [make_docs(30, seed=12)])
    r = run_inprocess(
        "--dataset", mirror, "--docs", 150, "--val-docs", 30, "--shard-tokens", 8000, "--out", root / "ds"
    )
    assert r.code == 0, r.output
    return root / "ds"


def stop_at(monkeypatch, step: int) -> None:
    """SIGTERM mid-step at `step` of the training run about to start, as a real `kill` would arrive."""
    import signal

    from minigpt.data.loader import TokenData

    original = TokenData.batch

    def batch(self, seed, s, micro, B, T):
        if s == step and micro == 0:
            signal.raise_signal(signal.SIGTERM)
        return original(self, seed, s, micro, B, T)

    monkeypatch.setattr(TokenData, "batch", batch)


@contextmanager
def mounted(folder: Path, *how: list[str]):
    """Mount commands run on folder (as root), unmounted after; the test is skipped where mounting is not
    allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    for cmd in how:
        r = subprocess.run([*cmd, str(folder)], capture_output=True, text=True)
        if r.returncode:
            if cmd is not how[0]:
                subprocess.run(["umount", str(folder)], capture_output=True)
            pytest.skip(f"cannot mount here ({' '.join(cmd)}: {r.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def small_disk(folder: Path, size: str = "64m"):
    """A file system of its own at folder (a tmpfs), which a test can fill for real."""
    if os.geteuid() != 0:
        pytest.skip("a tmpfs of its own needs root")
    return mounted(folder, ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs"])


@contextmanager
def read_only(folder: Path):
    """folder made read-only for this user: its write bits taken away, or for root (whom permissions do not
    stop) a read-only bind mount of it over itself."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(mode)
        return
    with mounted(folder, ["mount", "--bind", str(folder)], ["mount", "-o", "remount,bind,ro"]):
        yield folder
