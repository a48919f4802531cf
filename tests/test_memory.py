"""Runs that cannot fit are refused before they start: minigpt-train (with the flags that would fit, a
note where a run takes most of the memory), minigpt-eval's batches, minigpt-sample's window; and the
issue's run, a block of 1,000,000 tokens, refused by the real process on this machine's real memory."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, invoke, run_inprocess
from minigpt import memory
from test_train import TINY, assert_error, run_train


def tiny_need(vocab: int, batch: int, block: int = 32) -> int:
    """What memory.py says a tiny-preset step needs (the trainer's own model and optimizers)."""
    import torch

    from minigpt.config import make_config
    from minigpt.model import GPT, GPTConfig
    from minigpt.optim import make_optimizers

    cfg = make_config("tiny", batch_size=batch, block_size=block)
    model = GPT(GPTConfig.from_train(cfg, vocab))
    opts = make_optimizers(model, cfg, torch.device("cpu"), torch.float32)
    return memory.train_need(model, cfg, opts, torch.device("cpu"), torch.float32).total


def with_memory(monkeypatch, free: int) -> None:
    monkeypatch.setattr(memory, "available", lambda device: free)


def vocab_of(dataset) -> int:
    return json.loads((dataset / "manifest.json").read_text())["vocab_size"]


def test_a_step_that_cannot_fit_is_refused_with_a_batch_that_would(dataset, tmp_path, monkeypatch):
    with_memory(monkeypatch, tiny_need(vocab_of(dataset), 4) + 1)  # a batch of 4 fits, 8 does not
    run = tmp_path / "run"
    r = run_train(*TINY, "--data", dataset, "--out", run)
    assert_error(
        r,
        "a training step of 16 x 32 tokens needs about",
        "MB available",
        "--batch-size 4 --grad-accum 4 (the same 512 tokens a step)",
    )
    assert r.exit_code == 2 and not run.exists()
    r = run_train(*TINY, "--batch-size", 4, "--grad-accum", 4, "--max-iters", 4, "--data", dataset, "--out", run)
    assert r.exit_code == 0, r.output  # the flags it named


def test_where_even_one_window_cannot_fit_a_shorter_block_is_named(dataset, tmp_path, monkeypatch):
    with_memory(monkeypatch, tiny_need(vocab_of(dataset), 1, 8) + 1)
    r = run_train(*TINY, "--data", dataset, "--out", tmp_path / "run")
    assert_error(r, "--batch-size 1 --grad-accum 16 --block-size 8 (a shorter context: 128 tokens a step)")


def test_a_run_that_takes_most_of_the_memory_says_so(dataset, tmp_path, monkeypatch):
    need = tiny_need(vocab_of(dataset), 16)
    with_memory(monkeypatch, int(need / 0.9))
    r = run_train(*TINY, "--max-iters", 2, "--data", dataset, "--out", tmp_path / "run")
    assert r.exit_code == 0 and "note: a training step of 16 x 32 tokens takes about" in r.output, r.output
    with_memory(monkeypatch, need * 2)
    r = run_train(*TINY, "--max-iters", 2, "--data", dataset, "--out", tmp_path / "quiet")
    assert r.exit_code == 0 and "note: a training step" not in r.output


def test_eval_fits_its_batch_or_refuses_the_one_given_and_sample_its_window(dataset, tmp_path, monkeypatch):
    import torch

    from minigpt.checkpoint import open_run
    from minigpt.cli import eval_app, sample_app

    run = tmp_path / "run"
    assert run_train(*TINY, "--max-iters", 2, "--data", dataset, "--out", run).exit_code == 0
    whole = json.loads(invoke(eval_app, "--run", run, "--json").stdout)
    config = open_run(run).model
    with_memory(monkeypatch, memory.forward_need(config, 3, 32, torch.float32).total + 1)  # 3 windows at once
    small = invoke(eval_app, "--run", run, "--json")
    assert small.exit_code == 0 and json.loads(small.stdout)["loss"] == pytest.approx(whole["loss"], rel=1e-6)
    assert (json.loads(small.stdout)["batch_size"], whole["batch_size"]) == (3, 64)
    r = invoke(eval_app, "--run", run, "--batch-size", 64)
    assert_error(r, "scoring 64 windows of 32 tokens at once needs about", "--batch-size 3")
    with_memory(monkeypatch, 1)
    r = invoke(sample_app, "--run", run, "--max-new-tokens", 5)
    assert_error(r, f"sampling from {run} (a window of 32 tokens) needs about", "--device cpu")


def test_the_issue_s_run_is_refused_by_the_real_process(tmp_path):
    """`minigpt-train --preset tiny --block-size 1000000`, which grew past 20 GB in its first step: refused
    before it starts (16 windows of a million tokens need far more than any machine this runs on has)."""
    text = tmp_path / "long.txt"
    text.write_text(("The quick brown fox jumps over the lazy dog. " * 23_000)[:1_010_000])
    r = run_inprocess("--data-files", text, "--val-data-files", text, "--out", tmp_path / "ds")
    assert r.code == 0, r.output
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "--preset",
            "tiny",
            "--block-size",
            "1000000",
            "--data",
            str(tmp_path / "ds"),
            "--out",
            str(tmp_path / "run"),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "error: a training step of 16 x 1000000 tokens needs about" in p.stderr and "GB available" in p.stderr
    assert "---> HINT: --batch-size" in p.stderr and not (tmp_path / "run").exists()
