"""Faults that must lose nothing and misreport nothing: torn metrics, a full disk, changed flags on
--resume, two writers at once, run folders and datasets that do not parse, kill -9 inside a write."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, metrics, stop_at
from minigpt.data.loader import TokenData
from test_train import TINY, assert_error, run_train, without_timing

ARGS = (*TINY, "--dropout", 0.1)


@pytest.fixture
def whole(dataset, tmp_path):
    """An uninterrupted run to compare with."""
    assert run_train(*ARGS, "--data", dataset, "--out", tmp_path / "whole").exit_code == 0
    return tmp_path / "whole"


def assert_same_run(a, b):
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert without_timing(metrics(a)) == without_timing(metrics(b))


def test_a_torn_last_metrics_line_is_dropped_on_resume(dataset, tmp_path, monkeypatch, whole):
    parts = tmp_path / "parts"
    stop_at(monkeypatch, 23)
    assert run_train(*ARGS, "--data", dataset, "--out", parts).exit_code == 143
    monkeypatch.undo()
    with open(parts / "metrics.jsonl", "a") as f:
        f.write('{"step": 25, "tokens_seen": 12')  # a kill or a power loss in the middle of an append
    r = run_train(*ARGS, "--data", dataset, "--out", parts, "--resume")
    assert r.exit_code == 0 and "torn line" in r.output and "Traceback" not in r.output, r.output
    assert_same_run(parts, whole)


def test_resume_refuses_flags_that_make_another_run_and_records_the_ones_it_allows(dataset, tmp_path, monkeypatch):
    run = tmp_path / "run"
    stop_at(monkeypatch, 10)
    assert run_train(*ARGS, "--data", dataset, "--out", run).exit_code == 143
    monkeypatch.undo()
    r = run_train(*ARGS, "--data", dataset, "--out", run, "--resume", "--lr", 0.5, "--batch-size", 4, "--seed", 99)
    assert_error(
        r,
        "--resume: these settings differ",
        "--batch-size was 16, now 4",
        "--lr was 0.01, now 0.5",
        "--seed was 1337, now 99",
        "--init-from",
        "--max-iters",
    )
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["lr"] == 0.01 and "resumes" not in config
    r = run_train(*ARGS, "--data", dataset, "--out", run, "--resume", "--max-iters", 50, "--log-interval", 10)
    assert r.exit_code == 0 and "changed on resume: max_iters 40 -> 50, log_interval 5 -> 10" in r.output, r.output
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["max_iters"] == 50
    assert config["resumes"] == [{"step": 11, "changed": {"max_iters": [40, 50], "log_interval": [5, 10]}}]
    assert metrics(run)[-1]["step"] == 50


@pytest.mark.parametrize(
    "key,value,needle",
    [
        ("mlp", "swish", "mlp 'swish'"),
        ("n_head", 3, "not divisible by n_head 3"),
        ("n_layer", "two", "n_layer 'two'"),
        ("qk_norm", None, "qk_norm"),
    ],
)
def test_run_folders_that_do_not_parse(dataset, tmp_path, key, value, needle):
    run = tmp_path / "run"
    assert run_train(*TINY, "--max-iters", 2, "--data", dataset, "--out", run).exit_code == 0
    config = json.loads((run / "config.json").read_text())
    if value is None:
        del config["model"][key]
    else:
        config["model"][key] = value
    (run / "config.json").write_text(json.dumps(config))
    from minigpt.cli import eval_app, sample_app
    from conftest import invoke

    for app in (sample_app, eval_app):
        r = invoke(app, "--run", run)
        assert r.exit_code == 2 and "cannot read config.json" in r.output and needle in r.output, r.output


def test_unreadable_checkpoint_datasets_of_another_version_and_the_train_budget(dataset, tmp_path):
    run = tmp_path / "run"
    assert run_train(*TINY, "--max-iters", 2, "--data", dataset, "--out", run).exit_code == 0
    (run / "train_state.pt").write_bytes(b"not a checkpoint")
    assert_error(run_train(*TINY, "--max-iters", 4, "--data", dataset, "--out", run), "cannot be read", "--force")
    newer = tmp_path / "newer"
    newer.mkdir()
    for p in dataset.iterdir():
        if p.is_file():
            (newer / p.name).write_bytes(p.read_bytes())
    m = json.loads((newer / "manifest.json").read_text())
    m["version"] = 2
    (newer / "manifest.json").write_text(json.dumps(m))
    assert_error(run_train(*TINY, "--data", newer, "--out", tmp_path / "x"), "format version 2", "reads version 1")
    # --eval-tokens 0: the whole val split, and as many train tokens as val has (not one window)
    data = TokenData(dataset)
    train = data.eval_windows("train", 32, 0, 1337)
    assert len(train) == min(data.tokens("val") // 32, data._starts("train", 32).sum()) > 1


KILL_HOOK = """import os, signal, sys, torch
import minigpt.checkpoint as ck
where = sys.argv[1]
real_save, real_weights, last = ck._torch_save, ck.save_model, {}
def kill_mid_write(path):
    open(path, "wb").write(b"half")  # part of the file, then kill -9
    os.kill(os.getpid(), signal.SIGKILL)
def save(obj, path):
    last["step"] = obj["step"]
    if where == "state" and obj["step"] == 40:
        kill_mid_write(path)
    return real_save(obj, path)
def save_model(model, f, *a, **k):
    if where == "weights" and last.get("step") == 40:
        kill_mid_write(f)
    return real_weights(model, f, *a, **k)
ck._torch_save, ck.save_model = save, save_model
from minigpt.cli import train_cli
sys.argv = ["minigpt-train"] + sys.argv[2:]
train_cli()
"""


@pytest.mark.parametrize("where", ["state", "weights"])
def test_kill_9_inside_a_checkpoint_write_then_resume(dataset, tmp_path, whole, where):
    """A process killed while the step-40 checkpoint is written, inside train_state.pt or inside
    model.safetensors: a temporary file is all it leaves; the resume (from step 20, or from the complete
    step-40 checkpoint whose weights file it rewrites) ends where an uninterrupted run does."""
    parts = tmp_path / "parts"
    args = [str(a) for a in (*ARGS, "--data", dataset, "--out", parts)]
    p = subprocess.run(
        [sys.executable, "-c", KILL_HOOK, where, *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert p.returncode == -signal.SIGKILL, p.stderr
    tmp = ".train_state.pt.tmp-*" if where == "state" else ".model.safetensors.tmp-*"
    assert list(parts.glob(tmp))
    assert torch.load(parts / "train_state.pt", weights_only=True)["step"] == (20 if where == "state" else 40)
    r = run_train(*ARGS, "--data", dataset, "--out", parts, "--resume")
    assert r.exit_code == 0, r.output
    assert not list(parts.glob(".*tmp*"))  # the leftover is cleaned
    assert_same_run(parts, whole)


def test_sample_on_a_console_that_is_not_utf8(dataset, tmp_path):
    run = tmp_path / "run"
    assert run_train(*TINY, "--max-iters", 2, "--data", dataset, "--out", run).exit_code == 0
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "sample.py"),
            "--run",
            str(run),
            "--prompt",
            "Caf\u00e9 au lait",
            "--max-new-tokens",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
    )
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert p.stdout.startswith("Caf? au lait")
