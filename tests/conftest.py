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
from pathlib import Path

# Before anything imports datasets: no hub, and caches in a throwaway folder.
_HF_HOME = tempfile.mkdtemp(prefix="minigpt-hf-home-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("HF_ENDPOINT", None)

import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from c4mirror import make_docs, write_c4_mirror  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


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


def run_subprocess(*args: str, env: dict | None = None, cwd: Path | None = None,
                   script: list[str] | None = None) -> Ran:
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
    rare = {"text": "A rare snowman \u2603 and \u03a9mega.", "timestamp": "2019-04-25T12:57:54Z", "url": "https://rare.example/1"}
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
    r = run_inprocess("--dataset", mirror, "--docs", 150, "--val-docs", 30, "--shard-tokens", 8000,
                      "--out", root / "ds")
    assert r.code == 0, r.output
    return root / "ds"


def stop_at(monkeypatch, step: int) -> None:
    """SIGTERM mid-step at `step` of the training run about to start, as a real `kill` would arrive."""
    import signal

    from minigpt.data import TokenData

    original = TokenData.batch

    def batch(self, seed, s, micro, B, T):
        if s == step and micro == 0:
            signal.raise_signal(signal.SIGTERM)
        return original(self, seed, s, micro, B, T)
    monkeypatch.setattr(TokenData, "batch", batch)
