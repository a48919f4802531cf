"""minigpt on a CUDA GPU: skipped where torch sees none (CI), run on a lent GPU (see BENCHMARKS.md).

The dataset is prepared from a test mirror with the reading step swapped for pyarrow, so these tests
need no `datasets` on the GPU machine; everything after the read (vocabulary, shards, manifest) is
minigpt-prepare's own code.
"""

import json
import math
import signal
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from c4mirror import make_docs, write_c4_mirror
from conftest import ROOT, invoke, metrics, run_inprocess, run_subprocess
from minigpt.data import stream
from minigpt.data.loader import TokenData, to_device
from minigpt.decode import GraphedDecode
from minigpt.engine import Engine, SamplingParams
from minigpt.model import GPT, GPTConfig, KVCache
from minigpt.config import make_config
from minigpt.optim import lr_at, make_optimizers
from minigpt.step import GraphedStep, Step
from minigpt.device import peak_flops

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TINY = ("--preset", "tiny", "--max-iters", 60, "--eval-interval", 30, "--log-interval", 10, "--eval-tokens", 4096)
TRAIN_DOCS, VAL_DOCS = make_docs(300, seed=31), make_docs(40, seed=32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cuda-data")
    mirror = write_c4_mirror(root / "mirror", [TRAIN_DOCS], [VAL_DOCS])

    def tables(self):  # the documents `datasets` would stream from the mirror, in order
        yield stream.normalize(pa.Table.from_pylist(TRAIN_DOCS if self.split == "train" else VAL_DOCS), self.where)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stream.SplitStream, "_open", tables)
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
    assert torch.equal(x.cpu(), torch.from_numpy(batch[:, :-1])) and torch.equal(
        y.cpu(), torch.from_numpy(batch[:, 1:])
    )


@pytest.mark.parametrize("flags", [(), ("--no-compile",), ("--dtype", "float16", "--no-compile")])
def test_training_on_cuda_learns_and_writes_a_sampleable_run(dataset, tmp_path, flags):
    """bf16 autocast + torch.compile (the CUDA defaults), uncompiled, and fp16 with the grad scaler."""
    run = tmp_path / "run"
    r = run_cli("train_app", *TINY, *flags, "--data", dataset, "--out", run)
    assert r.exit_code == 0, r.output
    assert "torch.compile failed" not in r.output and "capture failed" not in r.output, r.output
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


def test_eval_on_cuda_gives_the_trainer_s_last_evaluation(dataset, tmp_path):
    """minigpt-eval's CUDA path (bf16 autocast, full batches through a captured forward pass) against the
    trainer's evaluation of the same windows (compiled, so bf16 rounds a little differently)."""
    run = tmp_path / "run"
    assert run_cli("train_app", *TINY, "--data", dataset, "--out", run).exit_code == 0
    last = [row for row in metrics(run) if "val_loss" in row][-1]["val_loss"]
    r = run_cli("eval_app", "--run", run, "--device", "cuda", "--json")
    assert r.exit_code == 0 and "capture failed" not in r.output, r.output
    assert json.loads(r.stdout)["loss"] == pytest.approx(last, rel=5e-3)


@pytest.mark.parametrize("compiled", [False, True])
def test_cuda_graph_step_computes_what_the_uncaptured_step_does(dataset, compiled):
    """step.GraphedStep (warm-up undone, then capture and replay) against step.Step, from the same
    weights on the same batches, fp32, Muon and AdamW: the same losses, and the same weight updates up to
    roundings (the learning rate is a tensor in the graph). Muon's bf16 iteration magnifies those: on the
    CPU a 1e-6 change of the rate moves 12 steps' updates by up to 4%; a rate lost gives 24-100%."""
    cfg = make_config("tiny", dtype="float32")
    data, device = TokenData(dataset), torch.device("cuda")
    torch.manual_seed(0)
    models = [GPT(GPTConfig.from_train(cfg, data.manifest["vocab_size"])).to(device) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    start = {n: p.detach().clone() for n, p in models[0].named_parameters()}

    def batches(step):
        return [data.batch(cfg.seed, step, 0, cfg.batch_size, cfg.block_size)]

    steps = []
    for m, graphed in zip(models, (False, True)):
        args = (
            torch.compile(m) if compiled else m,
            m,
            make_optimizers(m, cfg, device),
            1,
            cfg.grad_clip,
            nullcontext(),
            torch.amp.GradScaler("cuda", enabled=False),
            False,
            device,
        )
        steps.append(GraphedStep(*args, first=batches(0)) if graphed else Step(*args))
    losses = []
    for i in range(12):
        losses.append([float(step(batches(i), lr_at(i, cfg))) for step in steps])
        assert losses[-1][1] == pytest.approx(losses[-1][0], rel=2e-3), i
    assert len({round(b, 4) for _, b in losses}) > 6  # every replay saw its own batch
    assert losses[-1][1] < losses[0][1] - 0.2  # and learned
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters()):
        moved = (a - start[name]).norm()
        assert moved > 0.01 * start[name].norm() and (a - b).norm() < 0.15 * moved, (name, moved, (a - b).norm())


@pytest.mark.parametrize("flags", [(), ("--grad-accum", 2, "--grad-clip", 0)])
def test_cuda_graphs_on_and_off_train_the_same_run(dataset, tmp_path, flags):
    # the same eager kernels either way; with two micro-batches captured in one graph, and no clipping
    args = (*TINY, *flags, "--no-compile", "--dtype", "float32", "--data", dataset)
    on = run_cli("train_app", *args, "--out", tmp_path / "on")
    off = run_cli("train_app", *args, "--no-cuda-graphs", "--out", tmp_path / "off")
    assert on.exit_code == 0 and off.exit_code == 0 and "capture failed" not in on.output, on.output
    for x, y in zip(metrics(tmp_path / "off"), metrics(tmp_path / "on")):
        assert x["step"] == y["step"] and y["train_loss"] == pytest.approx(x["train_loss"], rel=2e-3)
        if "val_loss" in x:  # the graphed evaluation forward pass against the plain one
            assert y["val_loss"] == pytest.approx(x["val_loss"], rel=2e-3)


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
    r = run_cli(
        "train_app",
        "--preset",
        "tiny",
        "--n-embd",
        2048,
        "--n-head",
        16,
        "--n-layer",
        4,
        "--block-size",
        1024,
        "--batch-size",
        65536,
        "--no-compile",
        "--data",
        dataset,
        "--out",
        tmp_path / "run",
    )
    torch.cuda.empty_cache()
    assert r.exit_code != 0 and "Traceback" not in r.output, r.output
    assert "out of GPU memory" in r.output and "--grad-accum" in r.output


@pytest.fixture
def no_tf32():
    """fp32 matrix products for the test (training turns TF32 on for the whole process), restored after it."""
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = tf32


def test_kv_cache_matches_full_recomputation_on_cuda(no_tf32):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=60, block_size=32, n_layer=3, n_head=4, n_embd=64, dropout=0.0)
    model = GPT(cfg).cuda().eval()
    x = torch.randint(0, 60, (2, 32), device="cuda")
    with torch.no_grad():
        full = model(x)[0]
        cache = KVCache(cfg, 2, torch.device("cuda"))
        parts = [model(x[:, :12], cache=cache)[0]] + [model(x[:, i : i + 1], cache=cache)[0] for i in range(12, 32)]
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-4)


def test_graphed_decoding_gives_what_the_plain_cache_gives_on_cuda(dataset, tmp_path):
    run = tmp_path / "run"
    r = run_cli("train_app", *TINY, "--max-iters", 30, "--no-compile", "--data", dataset, "--out", run)
    assert r.exit_code == 0, r.output
    graphed, plain = Engine.load(run, "cuda"), Engine.load(run, "cuda", cuda_graph=False)
    # 150 characters: past the 32-character window, so the cache is refilled several times (a graph too)
    a = graphed.generate("The ", max_new_tokens=150, temperature=0)
    assert isinstance(graphed._fixed, GraphedDecode), "the CUDA graphs were not captured"
    assert a == plain.generate("The ", max_new_tokens=150, temperature=0)
    assert graphed.generate("The ", max_new_tokens=150, temperature=0.8, seed=5) == plain.generate(
        "The ", max_new_tokens=150, temperature=0.8, seed=5
    )


def test_the_compiled_step_inside_the_cuda_graph_gives_what_recomputation_gives(dataset, tmp_path, no_tf32):
    run = tmp_path / "run"
    r = run_cli("train_app", *TINY, "--max-iters", 30, "--no-compile", "--data", dataset, "--out", run)
    assert r.exit_code == 0, r.output
    torch.backends.cuda.matmul.allow_tf32 = (
        False  # training turned it on; fp32 (fixed at capture): no near-tie parts the two
    )
    engine, plain = Engine.load(run, "cuda", compile=True), Engine.load(run, "cuda", cuda_graph=False)
    assert isinstance(engine._fixed, GraphedDecode) and engine.compile, "compiled and captured when loaded"
    n = engine.model.config.block_size - 5  # inside the window: <eot>, "The " and the new characters
    ids, _ = engine.encode_prompt("The ")
    greedy = SamplingParams(temperature=0.0)
    recomputed = list(plain.stream(ids, n, greedy, None, use_cache=False))
    assert list(engine.stream(ids, n, greedy, None)) == recomputed
    assert len(engine.generate("The ", max_new_tokens=150, temperature=0.8, seed=5)) >= 150  # refills
    # as a user runs it, in a process of its own: no note of a fallback, and no advice from inductor (fp32 on purpose)
    r = run_subprocess(
        "--run",
        run,
        "--device",
        "cuda",
        "--compile",
        "--max-new-tokens",
        40,
        "--temperature",
        0,
        script=[sys.executable, str(ROOT / "sample.py")],
    )
    assert r.code == 0 and len(r.stdout) >= 40, r.output
    assert "note" not in r.stderr and "Warning" not in r.stderr, r.stderr


def test_same_seed_same_text_on_cuda(dataset, tmp_path):
    run = tmp_path / "run"
    assert (
        run_cli(
            "train_app",
            *TINY,
            "--max-iters",
            20,
            "--eval-interval",
            20,
            "--no-compile",
            "--data",
            dataset,
            "--out",
            run,
        ).exit_code
        == 0
    )
    engine = Engine.load(run, "cuda")
    a = engine.generate("The", max_new_tokens=100, seed=7)
    assert a == engine.generate("The", max_new_tokens=100, seed=7) and len(a) >= 100  # <eot> shows as 7 characters
    assert np.mean([c != d for c, d in zip(a, engine.generate("The", max_new_tokens=100, seed=8))]) > 0.1


def test_batched_decoding_on_cuda_gives_each_row_the_single_streams_logits_to_rounding(no_tf32):
    from minigpt.batched import BatchedDecode
    from minigpt.decode import Decode

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0)
    model, dev = GPT(cfg).cuda().eval(), torch.device("cuda")
    batched, solo = BatchedDecode(model, dev, 8), [Decode(model, dev) for _ in range(8)]
    g = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        for s in range(8):  # prompts of different lengths: the rows sit at different positions
            tokens = torch.randint(0, 40, (s + 1,), generator=g).tolist()
            assert torch.allclose(batched.prefill(s, tokens), solo[s].prefill(tokens), atol=1e-5)
        for _ in range(6):
            tokens = torch.randint(0, 40, (8,), generator=g).tolist()
            logits = batched.step(list(range(8)), tokens)
            for s in range(8):
                assert torch.allclose(logits[s : s + 1], solo[s](tokens[s]), atol=1e-5), s
