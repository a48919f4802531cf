"""minigpt-train on the CPU: keyed batches, the model, exact reruns and resume, the run folder, errors."""

import copy
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from safetensors.torch import load_model

from conftest import ROOT, invoke, metrics
from minigpt.checkpoint import TIMING_FIELDS
from minigpt.config import PRESETS, TrainConfig, make_config
from minigpt.data.loader import TokenData
from minigpt.errors import UserError
from minigpt.model import GPT, GPTConfig
from minigpt.optim import make_optimizers
from minigpt.step import Step, rewound

TINY = ("--preset", "tiny", "--max-iters", 40, "--eval-interval", 20, "--log-interval", 5, "--eval-tokens", 2048)


def run_train(*args):
    from minigpt.cli import train_app

    return invoke(train_app, *args)


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]


# ---- data ----


def test_batch_is_a_pure_function_of_its_key(dataset):
    a, b = TokenData(dataset), TokenData(dataset)
    key = dict(seed=7, step=123, micro=2, B=8, T=32)
    first = a.batch(**key)
    for other in (dict(key, step=124), dict(key, micro=3), dict(key, micro=0), dict(key, seed=8)):
        a.batch(**other)  # other draws in between change nothing
        assert not np.array_equal(a.batch(**other), first)
    assert np.array_equal(b.batch(**key), first) and np.array_equal(a.batch(**key), first)
    assert first.shape == (8, 33) and first.dtype == np.int64


def test_windows_never_straddle_shards(dataset):
    data = TokenData(dataset)
    assert len(data.shards["train"]) > 3
    T = 60
    # every legal window, shard by shard: a drawn window must be one of them
    legal = {
        tuple(w) for s in data.shards["train"] for w in np.lib.stride_tricks.sliding_window_view(np.asarray(s), T + 1)
    }
    rows = np.concatenate([data.batch(1, step, 0, 64, T) for step in range(40)])
    assert all(tuple(r) in legal for r in rows)
    # and draws reach the last tokens of shards (uniform over every start, ends included)
    lasts = {tuple(np.asarray(s)[-(T + 1) :]) for s in data.shards["train"]}
    rows = np.concatenate([data.batch(2, step, 0, 256, T) for step in range(200)])
    assert lasts & {tuple(r) for r in rows}


def test_eval_windows_are_fixed_and_cover_val(dataset):
    data = TokenData(dataset)
    w_all = data.eval_windows("val", 32, 0, seed=1)
    assert len(w_all) == sum((len(s) - 1) // 32 for s in data.shards["val"])
    assert np.array_equal(data.eval_windows("val", 32, 0, seed=99), w_all)  # no randomness in val
    assert len(data.eval_windows("val", 32, 320, seed=1)) == 10
    tw = data.eval_windows("train", 32, 640, seed=1)
    assert np.array_equal(tw, data.eval_windows("train", 32, 640, seed=1)) and len(tw) == 20


# ---- model ----


def test_model_shapes_tying_and_causality():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0)
    m = GPT(cfg).eval()
    assert m.lm_head.weight is m.wte.weight
    x = torch.randint(0, 50, (3, 16))
    logits, loss = m(x, torch.randint(0, 50, (3, 16)))  # at init, about uniform over the vocabulary
    assert logits.shape == (3, 16, 50) and abs(loss.item() - math.log(50)) < 0.5
    y = x.clone()
    y[:, 10:] = (y[:, 10:] + 1) % 50  # changing the future must not change the past
    assert torch.allclose(m(y)[0][:, :10], logits[:, :10], atol=1e-6)
    for name, p in m.named_parameters():
        if name.endswith("c_proj.weight"):
            assert abs(p.std().item() - 0.02 / math.sqrt(4)) < 0.004


@pytest.mark.parametrize(
    "options",
    [
        dict(pos="rope", qk_norm=True, mlp="relu2", bias=False),
        dict(pos="learned", qk_norm=False, mlp="gelu", bias=True),
        dict(tie_weights=False, init="zero"),
        dict(init="torch"),
    ],
)
def test_model_options_keep_shapes_and_causality(options):
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0, **options)).eval()
    x = torch.randint(0, 50, (2, 16))
    logits, loss = m(x, x)
    assert logits.shape == (2, 16, 50) and math.isfinite(loss.item())
    y = x.clone()
    y[:, 9:] = (y[:, 9:] + 1) % 50
    assert torch.allclose(m(y)[0][:, :9], logits[:, :9], atol=1e-5)
    assert (m.wpe is None) == (m.config.pos == "rope")
    if options.get("init") == "zero":
        assert all(not p.any() for n, p in m.named_parameters() if n.endswith("c_proj.weight") or n == "lm_head.weight")


def test_learning_rate_schedules():
    from minigpt.optim import lr_at

    cos, wsd, const = (
        make_config("tiny", max_iters=100, warmup_iters=10, lr=1.0, min_lr=0.1, schedule=s)
        for s in ("cosine", "wsd", "constant")
    )
    for cfg in (cos, wsd, const):
        assert [lr_at(s, cfg) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])  # the same linear warmup
    assert lr_at(55, cos) == pytest.approx(0.55) and lr_at(100, cos) == pytest.approx(0.1)
    assert lr_at(50, wsd) == lr_at(80, wsd) == 1.0 and lr_at(90, wsd) == pytest.approx(0.55)
    assert lr_at(100, wsd) == pytest.approx(0.1)
    assert {lr_at(s, const) for s in range(10, 100)} == {1.0}


@pytest.mark.parametrize("first_real_step", [False, True])
def test_rewound_leaves_no_trace_of_the_steps_it_wraps(first_real_step):
    """CUDA graph capture runs a few warm-up steps first (step.GraphedStep); `rewound` undoes them: the
    weights, the optimizers' state (made by those steps, or there before) and the RNG."""
    cfg = make_config("tiny", dropout=0.2)
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_train(cfg, 40))
    opts = make_optimizers(model, cfg, torch.device("cpu"))
    twin, twin_opts = copy.deepcopy((model, opts))
    steps = [
        Step(
            m,
            m,
            o,
            1,
            cfg.grad_clip,
            nullcontext(),
            torch.amp.GradScaler("cpu", enabled=False),
            False,
            torch.device("cpu"),
        )
        for m, o in ((model, opts), (twin, twin_opts))
    ]
    batch = [np.random.default_rng(0).integers(0, 40, (cfg.batch_size, cfg.block_size + 1))]
    if first_real_step:
        torch.manual_seed(1)
        steps[0](batch, 1e-2)
        torch.manual_seed(1)
        steps[1](batch, 1e-2)
    rng = torch.get_rng_state()
    with rewound(model, opts, torch.device("cpu")):
        for _ in range(3):
            steps[0](batch, 1e-2)
        assert not torch.equal(model.wte.weight, twin.wte.weight)  # the warm-up did change things
    assert torch.equal(torch.get_rng_state(), rng)
    for step in steps:  # the same step (dropout masks included) from the same state: the same weights
        torch.set_rng_state(rng)
        step(batch, 1e-2)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


# ---- presets ----


def test_presets_and_overrides():
    seed = make_config("seed")
    assert (
        seed.block_size,
        seed.batch_size,
        seed.max_iters,
        seed.lr,
        seed.eval_interval,
        seed.n_embd,
        seed.n_head,
        seed.n_layer,
        seed.dropout,
    ) == (64, 128, 5000, 3e-4, 250, 384, 8, 8, 0.2)
    assert make_config("B").batch_size * make_config("B").grad_accum == 128
    assert make_config("C").batch_size * make_config("C").grad_accum == 256
    assert make_config("A").lr == 3e-5 and make_config("C").block_size == 1024
    tiny = make_config("tiny", lr=5e-3, n_layer=3)
    assert tiny.lr == 5e-3 and tiny.n_layer == 3 and tiny.n_embd == PRESETS["tiny"]["n_embd"]
    with pytest.raises(UserError, match="not divisible"):
        make_config("tiny", n_embd=66)
    with pytest.raises(UserError, match="no such preset"):
        make_config("huge")


# ---- training ----


def test_loss_decreases_and_run_folder_is_complete(dataset, tmp_path):
    run = tmp_path / "run"
    r = run_train(*TINY, "--max-iters", 80, "--data", dataset, "--out", run)
    assert r.exit_code == 0, r.output
    rows = metrics(run)
    evals = [row for row in rows if "val_loss" in row]
    assert evals[0]["val_loss"] < math.log(len(json.loads((dataset / "vocab.json").read_text())["itos"]))
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.2
    assert evals[-1]["val_bpc"] == pytest.approx(evals[-1]["val_loss"] / math.log(2))
    assert {"step", "tokens_seen", "lr", "train_loss", "tokens_per_s", "elapsed_s"} <= set(rows[0])
    assert "best val loss" in r.stdout and "model.safetensors" in r.stdout
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["n_embd"] == 64 and cfg["train"]["preset"] == "tiny" and cfg["train"]["max_iters"] == 80
    assert cfg["dataset"]["manifest_sha256"] == TokenData(dataset).manifest_sha256
    assert set(cfg["versions"]) == {"python", "torch", "minigpt"}
    assert (run / "vocab.json").read_bytes() == (dataset / "vocab.json").read_bytes()
    model = GPT(GPTConfig(**cfg["model"]))
    load_model(model, str(run / "model.safetensors"))  # the weights alone rebuild the model
    state = torch.load(run / "train_state.pt", weights_only=True)
    assert state["step"] == 80 and torch.equal(state["model"]["wte.weight"], model.wte.weight)


def test_same_command_twice_gives_identical_results(dataset, tmp_path):
    for name in ("a", "b"):
        assert run_train(*TINY, "--data", dataset, "--out", tmp_path / name).exit_code == 0
    assert without_timing(metrics(tmp_path / "a")) == without_timing(metrics(tmp_path / "b"))
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


@pytest.mark.parametrize(
    "stop_at,accum,flags",
    [
        (3, 1, ()),
        (20, 2, ()),
        (33, 1, ()),
        (12, 1, "the other choices"),  # the optimizer (and its state) and model options that the default does not use
    ],
)
def test_sigterm_at_any_step_then_resume_is_byte_identical(dataset, tmp_path, monkeypatch, stop_at, accum, flags):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    if flags == "the other choices":
        d = TrainConfig()
        flags = (
            "--optimizer",
            "adamw" if d.optimizer == "muon" else "muon",
            "--pos",
            "learned" if d.pos == "rope" else "rope",
            "--mlp",
            "gelu" if d.mlp == "relu2" else "relu2",
            "--qk-norm" if not d.qk_norm else "--no-qk-norm",
            "--schedule",
            "cosine" if d.schedule == "wsd" else "wsd",
            # the tiny preset's iteration and model are fp32 on every CPU (device.muon_dtype, resolve_dtype)
            "--muon-dtype",
            "bfloat16",
            "--dtype",
            "bfloat16",
        )
    args = (*TINY, *flags, "--dropout", 0.1, "--grad-accum", accum, "--data", dataset)  # dropout: RNG state too
    assert run_train(*args, "--out", whole).exit_code == 0

    original = TokenData.batch

    def batch(self, seed, step, micro, B, T):
        if step == stop_at and micro == 0:
            signal.raise_signal(signal.SIGTERM)  # delivered mid-step, as a real `kill` would be
        return original(self, seed, step, micro, B, T)

    monkeypatch.setattr(TokenData, "batch", batch)
    r = run_train(*args, "--out", parts)
    assert r.exit_code == 143 and "--resume" in r.stdout, r.output
    assert torch.load(parts / "train_state.pt", weights_only=True)["step"] == stop_at + 1
    monkeypatch.setattr(TokenData, "batch", original)
    r = run_train(*args, "--out", parts, "--resume")
    assert r.exit_code == 0, r.output
    assert (parts / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    assert without_timing(metrics(parts)) == without_timing(metrics(whole))


def test_real_sigterm_from_outside_then_resume(dataset, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    args = [str(a) for a in (*TINY, "--max-iters", 200, "--eval-interval", 50, "--data", dataset)]
    assert run_train(*args, "--out", whole).exit_code == 0
    p = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args, "--out", str(parts)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in p.stdout:  # wait (by reading, not sleeping) until training is under way
        if line.startswith("step"):
            break
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=300)
    assert p.returncode in (0, 143) and "Traceback" not in err, err
    if p.returncode == 143:
        assert "stopped by SIGTERM" in out
        r = run_train(*args, "--out", parts, "--resume")
        assert r.exit_code == 0, r.output
    assert (parts / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()


# ---- bad input: one clear message, non-zero exit, no traceback ----


def assert_error(r, *needles):
    assert r.exit_code != 0 and "Traceback" not in r.output, r.output
    for n in needles:
        assert n in r.output, r.output


def test_no_dataset(tmp_path):
    assert_error(run_train("--preset", "tiny"), "no dataset under", "minigpt-prepare")
    assert_error(run_train("--preset", "tiny", "--data", tmp_path / "nope"), "does not exist", "minigpt-prepare")


def test_bare_train_finds_the_newest_dataset(dataset, tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copytree(dataset, tmp_path / "data" / "older")
    shutil.copytree(dataset, tmp_path / "data" / "newer")
    old = (tmp_path / "data" / "older" / "manifest.json").stat().st_mtime
    os.utime(tmp_path / "data" / "newer" / "manifest.json", (old + 60, old + 60))  # finished a minute later
    r = run_train(*TINY, "--max-iters", 5, "--eval-interval", 5)
    assert r.exit_code == 0, r.output
    assert "using the newest, newer" in r.output and (tmp_path / "runs" / "newer-tiny" / "model.safetensors").is_file()


def test_damaged_dataset(dataset, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(dataset, bad)
    shard = bad / "train_00001.bin"
    data = bytearray(shard.read_bytes())
    data[10] ^= 1
    shard.write_bytes(bytes(data))
    assert run_train(*TINY, "--max-iters", 2, "--data", bad, "--out", tmp_path / "r1").exit_code == 0  # size is right
    assert_error(run_train(*TINY, "--data", bad, "--out", tmp_path / "r2", "--verify-data"), "sha256", "rebuild")
    shard.write_bytes(bytes(data[:-5]))
    assert_error(run_train(*TINY, "--data", bad, "--out", tmp_path / "r3"), "train_00001.bin", "manifest says")


@pytest.mark.parametrize(
    "flags,needle",
    [
        (("--block-size", 100000), "does not fit the"),
        (("--n-embd", 66), "not divisible by --n-head"),
        (("--device", "cuda"), "no CUDA device"),
        (("--batch-size", 0), "--batch-size must be at least 1"),
        (("--optimizer", "sgd"), "--optimizer sgd: choose adamw, muon"),
        (("--pos", "alibi"), "--pos alibi: choose learned, rope"),
        (("--muon-dtype", "float16"), "--muon-dtype float16: choose auto, bfloat16, float32"),
    ],
)
def test_bad_settings(dataset, tmp_path, flags, needle):
    if flags[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_error(run_train(*TINY, *flags, "--data", dataset, "--out", tmp_path / "run"), needle)


def test_finished_run_is_not_overwritten_and_resume_checks_compatibility(dataset, tmp_path):
    run = tmp_path / "run"
    assert run_train(*TINY, "--max-iters", 5, "--data", dataset, "--out", run).exit_code == 0
    assert_error(run_train(*TINY, "--max-iters", 5, "--data", dataset, "--out", run), "finished run", "--force")
    assert_error(run_train(*TINY, "--n-layer", 3, "--data", dataset, "--out", run, "--resume"), "n_layer was 2, now 3")
    other = tmp_path / "other"
    shutil.copytree(dataset, other)
    m = json.loads((other / "manifest.json").read_text())
    m["source"]["docs"] += 1
    (other / "manifest.json").write_text(json.dumps(m))
    assert_error(run_train(*TINY, "--data", other, "--out", run, "--resume"), "another dataset")
    assert_error(run_train(*TINY, "--data", dataset, "--out", tmp_path / "none", "--resume"), "has no checkpoint")
    assert run_train(*TINY, "--max-iters", 5, "--data", dataset, "--out", run, "--force").exit_code == 0


def test_compile_on_cpu_trains_the_same_model_or_falls_back_with_a_message(dataset, tmp_path):
    args = (*TINY, "--max-iters", 3, "--eval-interval", 3, "--log-interval", 1, "--data", dataset)
    assert run_train(*args, "--out", tmp_path / "plain").exit_code == 0
    r = run_train(*args, "--compile", "--out", tmp_path / "compiled")
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    if "torch.compile failed here" in r.output:  # e.g. no C++ compiler: the plain model, said once
        assert r.output.count("torch.compile failed here") == 1 and "--no-compile" in r.output
        assert without_timing(metrics(tmp_path / "compiled")) == without_timing(metrics(tmp_path / "plain"))
    else:  # the same model: inductor's fused kernels round differently, nothing more
        plain, compiled = metrics(tmp_path / "plain"), metrics(tmp_path / "compiled")
        assert [r["step"] for r in compiled] == [r["step"] for r in plain]
        for a, b in zip(plain, compiled):
            assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert compiled[-1]["val_loss"] == pytest.approx(plain[-1]["val_loss"], rel=1e-4)


@pytest.mark.parametrize(
    "bf16_cpu,n_embd,expected,model",
    [
        (None, 128, "float32", "float32"),
        ("avx512_bf16", 96, "bfloat16", "bfloat16"),
        ("avx512_bf16", 64, "float32", "float32"),
    ],
)
def test_the_precisions_are_chosen_once_recorded_and_said(
    dataset, tmp_path, monkeypatch, bf16_cpu, n_embd, expected, model
):
    """Muon's iteration (device.muon_dtype) and the model's autocast (device.resolve_dtype), per CPU and width."""
    from minigpt import device

    monkeypatch.setattr(device, "cpu_bf16", lambda: bf16_cpu)
    run = tmp_path / "run"
    r = run_train(*TINY, "--max-iters", 2, "--eval-interval", 2, "--n-embd", n_embd, "--data", dataset, "--out", run)
    assert r.exit_code == 0, r.output
    runtime = json.loads((run / "config.json").read_text())["runtime"]
    assert runtime["muon_dtype"] == expected and runtime["device"] == "cpu" and runtime["dtype"] == model
    assert f"Muon's Newton-Schulz iteration in {expected} ({runtime['muon_dtype_why']})" in r.output
    assert f"in {model}{' autocast' if model == 'bfloat16' else ''} ({runtime['dtype_why']})" in r.output
    assert r.output.count("Newton-Schulz") == 1  # one start-up line
    assert {"threads", "cpu_flags", "matmul", "keep_freed_memory"} <= runtime.keys()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(dataset, tmp_path):
    run = tmp_path / "run"
    r = run_train(
        "--preset",
        "tiny",
        "--max-iters",
        30,
        "--eval-interval",
        1,
        "--log-interval",
        1,
        "--lr",
        1e6,
        "--min-lr",
        1e6,
        "--warmup-iters",
        0,
        "--grad-clip",
        0,
        "--eval-tokens",
        256,
        "--data",
        dataset,
        "--out",
        run,
    )
    assert_error(r, "loss became", "last good checkpoint")
    assert r.exit_code == 3
    state = torch.load(run / "train_state.pt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_a_slow_step_says_what_the_run_will_take_and_its_seconds_per_step(dataset, tmp_path, monkeypatch):
    import re

    from minigpt import trainer
    from minigpt.config import make_config

    monkeypatch.setattr(trainer, "SLOW_STEP_S", 0.0)  # every first step counts as slow here
    r = run_train(*TINY, "--max-iters", 5, "--data", dataset, "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    said = re.search(r"step 1 took ([\d.]+) s: the 4 steps left would take about ([\d.]+) s at this pace", r.output)
    assert said and float(said.group(2)) == pytest.approx(4 * float(said.group(1)), abs=1), r.output
    cfg = make_config("tiny")  # 512 tokens a step: at 256 tokens/s, 2 s a step
    row = {"step": 10, "train_loss": 2.0, "lr": 1e-3, "tokens_per_s": 256.0}
    assert trainer.log_line(row, cfg).endswith("256 tok/s  2.0 s/step")
    assert "s/step" not in trainer.log_line({**row, "tokens_per_s": 5120.0}, cfg)


def test_the_trainer_and_the_sampler_load_no_data_stage_libraries():
    """pyarrow, datasets and huggingface_hub are the data stage's (minigpt/data/): the trainer, its loader and
    the sampler start without them."""
    code = (
        "import sys, minigpt.trainer, minigpt.engine, minigpt.data.loader; "
        "print([m for m in ('pyarrow', 'datasets', 'huggingface_hub') if m in sys.modules])"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr
