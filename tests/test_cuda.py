"""minigpt on a CUDA GPU: skipped where torch sees none (CI), run on a lent GPU (see BENCHMARKS.md).

The dataset is prepared from a test mirror with the reading step swapped for pyarrow, so these tests
need no `datasets` on the GPU machine; everything after the read (vocabulary, shards, manifest) is
minigpt-prepare's own code.
"""

import json
import math
import signal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from c4mirror import make_docs, write_c4_mirror
from conftest import invoke, metrics, run_inprocess
from minigpt import c4
from minigpt.data import TokenData, to_device
from minigpt.engine import Engine
from minigpt.model import GPT, GPTConfig, KVCache
from minigpt.trainer import peak_flops

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TINY = ("--preset", "tiny", "--max-iters", 60, "--eval-interval", 30, "--log-interval", 10, "--eval-tokens", 4096)
TRAIN_DOCS, VAL_DOCS = make_docs(300, seed=31), make_docs(40, seed=32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cuda-data")
    mirror = write_c4_mirror(root / "mirror", [TRAIN_DOCS], [VAL_DOCS])

    def tables(source, split):  # the documents `datasets` would stream from the mirror, in order
        yield c4._normalize(pa.Table.from_pylist(TRAIN_DOCS if split == "train" else VAL_DOCS), split)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(c4, "_tables", tables)
        r = run_inprocess("--dataset", mirror, "--docs", 300, "--val-docs", 40, "--out", root / "ds")
    assert r.code == 0, r.output
    return root / "ds"


def run_cli(app_name: str, *args):
    from minigpt import cli

    return invoke(getattr(cli, app_name), *args)


def test_batches_reach_the_gpu_unchanged(dataset):
    data = TokenData(dataset)
    batch = data.batch(1, 5, 0, 64, 32)
    x, y = to_device(batch, torch.device("cuda"))
    assert x.is_cuda and x.shape == (64, 32)
    assert torch.equal(x.cpu(), torch.from_numpy(batch[:, :-1])) and torch.equal(y.cpu(), torch.from_numpy(batch[:, 1:]))


@pytest.mark.parametrize("flags", [(), ("--no-compile",), ("--dtype", "float16", "--no-compile")])
def test_training_on_cuda_learns_and_writes_a_sampleable_run(dataset, tmp_path, flags):
    """bf16 autocast + torch.compile (the CUDA defaults), uncompiled, and fp16 with the grad scaler."""
    run = tmp_path / "run"
    r = run_cli("train_app", *TINY, *flags, "--data", dataset, "--out", run)
    assert r.exit_code == 0, r.output
    assert "torch.compile failed" not in r.output, r.output
    rows = metrics(run)
    evals = [row for row in rows if "val_loss" in row]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.1 and math.isfinite(evals[-1]["val_loss"])
    if peak_flops(torch.device("cuda")):
        assert all(0 <= row["mfu"] < 1 for row in rows) and rows[-1]["mfu"] > 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["device"] == "auto"
    # the weights are plain fp32 tensors that load on the CPU
    engine = Engine.load(run, "cpu")
    assert engine.model.wte.weight.dtype == torch.float32
    text = run_cli("sample_app", "--run", run, "--device", "cuda", "--max-new-tokens", 50, "--seed", 3)
    assert text.exit_code == 0 and len(text.stdout) >= 50, text.output


def test_sigterm_then_resume_on_cuda_ends_where_an_uninterrupted_run_does(dataset, tmp_path, monkeypatch):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    args = (*TINY, "--no-compile", "--dtype", "float32", "--dropout", 0.1, "--data", dataset)  # dropout: CUDA RNG
    assert run_cli("train_app", *args, "--out", whole).exit_code == 0
    original = TokenData.batch

    def batch(self, seed, step, micro, B, T):
        if step == 25 and micro == 0:
            signal.raise_signal(signal.SIGTERM)
        return original(self, seed, step, micro, B, T)
    monkeypatch.setattr(TokenData, "batch", batch)
    assert run_cli("train_app", *args, "--out", parts).exit_code == 143
    monkeypatch.setattr(TokenData, "batch", original)
    r = run_cli("train_app", *args, "--out", parts, "--resume")
    assert r.exit_code == 0 and "resuming" in r.output, r.output
    a, b = metrics(whole), metrics(parts)
    assert [row["step"] for row in a] == [row["step"] for row in b]
    # the same batches, dropout masks and optimizer state: equal up to CUDA's non-deterministic reductions
    for x, y in zip(a, b):
        assert y["train_loss"] == pytest.approx(x["train_loss"], rel=1e-3)
    assert b[-1]["val_loss"] == pytest.approx(a[-1]["val_loss"], rel=1e-3)


def test_out_of_memory_gives_advice(dataset, tmp_path):
    r = run_cli("train_app", "--preset", "tiny", "--n-embd", 2048, "--n-head", 16, "--n-layer", 4, "--block-size", 1024,
                "--batch-size", 65536, "--no-compile", "--data", dataset, "--out", tmp_path / "run")
    torch.cuda.empty_cache()
    assert r.exit_code != 0 and "Traceback" not in r.output, r.output
    assert "out of GPU memory" in r.output and "--grad-accum" in r.output


def test_kv_cache_matches_full_recomputation_on_cuda():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=60, block_size=32, n_layer=3, n_head=4, n_embd=64, dropout=0.0)
    model = GPT(cfg).cuda().eval()
    x = torch.randint(0, 60, (2, 32), device="cuda")
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.no_grad():
            full = model(x)[0]
            cache = KVCache(cfg, 2, torch.device("cuda"))
            parts = [model(x[:, :12], cache=cache)[0]] + [model(x[:, i:i + 1], cache=cache)[0] for i in range(12, 32)]
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-4)


def test_same_seed_same_text_on_cuda(dataset, tmp_path):
    run = tmp_path / "run"
    assert run_cli("train_app", *TINY, "--max-iters", 20, "--eval-interval", 20, "--no-compile",
                   "--data", dataset, "--out", run).exit_code == 0
    engine = Engine.load(run, "cuda")
    a = engine.generate("The", max_new_tokens=100, seed=7)
    assert a == engine.generate("The", max_new_tokens=100, seed=7) and len(a) >= 100  # <eot> shows as 7 characters
    assert np.mean([c != d for c, d in zip(a, engine.generate("The", max_new_tokens=100, seed=8))]) > 0.1
