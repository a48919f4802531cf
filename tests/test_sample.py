"""minigpt-sample: the run folder alone, the KV cache, sampling controls, errors, the console script."""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import invoke, run_inprocess
from c4mirror import make_docs, write_c4_mirror
from minigpt import decode
from minigpt.decode import CompiledDecode, CPUDecode, Decode
from minigpt.kernels import CPUDecodeLinear, cpu_decode_layout, reduce_layout
from minigpt.engine import Engine, SamplingParams, filter_logits
from minigpt.model import GPT, GPTConfig, KVCache
from minigpt.data.vocab import Vocab


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny model trained for 150 steps (a few seconds), in its own run folder."""
    from minigpt.cli import train_app

    root = tmp_path_factory.mktemp("sample")
    mirror = write_c4_mirror(root / "mirror", [make_docs(150, seed=21)], [make_docs(20, seed=22)])
    assert run_inprocess("--dataset", mirror, "--docs", 150, "--val-docs", 20, "--out", root / "ds").code == 0
    r = invoke(train_app, "--preset", "tiny", "--max-iters", 150, "--data", root / "ds", "--out", root / "run")
    assert r.exit_code == 0, r.output
    return root / "run"


def run_sample(*args):
    from minigpt.cli import sample_app

    return invoke(sample_app, *args)


def tokens(engine, prompt, n, *, seed=0, use_cache=True, stop=False, **params):
    ids, _ = engine.encode_prompt(prompt)
    gen = torch.Generator().manual_seed(seed)
    return list(engine.stream(ids, n, SamplingParams(**params), gen, stop_at_eot=stop, use_cache=use_cache))


@pytest.mark.parametrize("options", [{}, dict(pos="rope", qk_norm=True), dict(pos="learned", mlp="relu2")])
def test_kv_cache_logits_match_full_recomputation(options):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=40, block_size=24, n_layer=3, n_head=4, n_embd=32, dropout=0.0, **options)
    model = GPT(cfg).eval()
    x = torch.randint(0, 40, (2, 24))
    with torch.no_grad():
        full = model(x)[0]
        cache = KVCache(cfg, 2, torch.device("cpu"))
        parts = [model(x[:, :10], cache=cache)[0]]  # prefill 10, then 1 at a time, then 4 at once
        parts += [model(x[:, i : i + 1], cache=cache)[0] for i in range(10, 20)]
        parts.append(model(x[:, 20:], cache=cache)[0])
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)


@pytest.mark.parametrize("pos", ["rope", "learned"])
def test_decoding_at_a_position_held_in_a_tensor_is_decoding_at_a_python_position(pos):
    """What the CUDA graph of decode.GraphedDecode replays: the position read from cache.index, keys and
    values written there, and every slot past it masked out (here filled with garbage to show it)."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0, pos=pos)
    model = GPT(cfg).eval()
    x = torch.randint(0, 40, (1, 16))
    plain, indexed = KVCache(cfg, 1, torch.device("cpu")), KVCache(cfg, 1, torch.device("cpu"))
    with torch.no_grad():
        model(x[:, :5], cache=plain)
        model(x[:, :5], cache=indexed)
        for k, v in zip(indexed.k, indexed.v):
            k[:, :, 5:], v[:, :, 5:] = 7.0, -7.0
        for i in range(5, 16):
            expected = model(x[:, i : i + 1], cache=plain)[0]
            indexed.index = torch.tensor([i])
            got = model(x[:, i : i + 1], cache=indexed)[0]
            indexed.index, indexed.pos = None, indexed.pos + 1  # the engine advances the position itself
            assert torch.allclose(got, expected, atol=1e-5), i


@pytest.mark.parametrize("options", [{}, dict(pos="learned", qk_norm=False, mlp="gelu", bias=True)])
def test_the_cpu_decoding_step_is_the_models_forward_bit_for_bit(options):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0, **options)
    model = cpu_decode_layout(GPT(cfg).eval())
    x = torch.randint(0, 40, (1, 16))
    step, cache = CPUDecode(model, torch.device("cpu")), KVCache(cfg, 1, torch.device("cpu"))
    with torch.no_grad():
        model(x[:, :5], cache=cache)
        model(x[:, :5], cache=step.cache)
        for i in range(5, 16):
            assert torch.equal(step(int(x[0, i])), model(x[:, i : i + 1], cache=cache)[0][:, -1]), i
    assert step.cache.pos == cache.pos == 16 and torch.equal(torch.stack(step.cache.k), torch.stack(cache.k))


needs_cxx = pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")), reason="torch.compile on the CPU needs a C++ compiler"
)


@needs_cxx
def test_the_compiled_cpu_step_decodes_what_the_model_does_with_one_compile_for_every_position():
    cfg = GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0)
    x = torch.randint(0, 40, (1, 16), generator=torch.Generator().manual_seed(0))
    for seed in (0, 1):  # two models, two compiled steps in one process: each decodes its own weights
        torch.manual_seed(seed)
        model = reduce_layout(GPT(cfg).eval())
        step, cache = CompiledDecode(model, torch.device("cpu")), KVCache(cfg, 1, torch.device("cpu"))
        with torch.inference_mode(), torch._dynamo.config.patch(error_on_recompile=True):
            model(x[:, :5], cache=cache)
            model(x[:, :5], cache=step.cache)
            for i in range(5, 16):
                expected = model(x[:, i : i + 1], cache=cache)[0][:, -1]
                assert torch.allclose(step(int(x[0, i])), expected, atol=1e-5), (seed, i)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("parts", [1, 2, 3])
def test_cpu_decode_layout_computes_what_linear_computes(parts, bias):
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 20, bias=bias)
    fast = CPUDecodeLinear(linear, parts)
    for shape in [(1, 1, 48), (1, 48), (2, 5, 48), (1, 7, 48)]:  # one row (bmm over slabs), several (matmul)
        x = torch.randn(shape)
        with torch.no_grad():
            assert torch.allclose(fast(x), linear(x), atol=1e-6)


def test_greedy_with_cache_is_token_for_token_full_recomputation(run):
    engine = Engine.load(run)
    plain = Engine.load(run, cpu_layout=False)  # the old way: the plain model over the whole window
    assert isinstance(engine.model.blocks[0].mlp.c_fc, CPUDecodeLinear) and isinstance(engine._decoder(), CPUDecode)
    T = engine.model.config.block_size
    for prompt in ("", "The market", "Prices rose in the café"):
        n = T - 1 - len(prompt)  # the whole window, <eot> + prompt + generated
        cached = tokens(engine, prompt, n, temperature=0.0)
        assert cached == tokens(plain, prompt, n, temperature=0.0, use_cache=False)
        assert cached == tokens(plain, prompt, n, temperature=0.0)
        assert len(cached) == n
    # past the window the documented policy (refill from the last half window) takes over, the same in both
    assert type(plain._decoder()) is Decode  # the model's own forward over the cache
    past = tokens(engine, "The market", 3 * T, temperature=0.0)
    assert len(past) == 3 * T and past == tokens(plain, "The market", 3 * T, temperature=0.0)


def test_a_failed_compile_leaves_one_note_and_decodes_with_the_step_asked_for(run, monkeypatch, capsys):
    def broken(fn):  # what a compile that fails on its first call does
        def call(*args):
            raise RuntimeError("no compiler here")

        return call

    monkeypatch.setattr(decode, "compiled", broken)
    plain = Engine.load(run, cpu_layout=False)
    for layout, kind in ((True, CPUDecode), (False, Decode)):
        engine = Engine.load(run, compile=True, cpu_layout=layout)
        err = capsys.readouterr().err
        assert (
            "note: torch.compile of the decoding step failed (RuntimeError: no compiler here); decoding without it"
            in err
        )
        assert err.count("note:") == 1 and type(engine._decoder()) is kind and not engine.compile
        assert tokens(engine, "The", 20, temperature=0.0) == tokens(plain, "The", 20, temperature=0.0, use_cache=False)


def test_a_window_of_one_character_decodes_what_recomputation_does():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=12, block_size=1, n_layer=1, n_head=2, n_embd=8, dropout=0.0))
    vocab = Vocab(["<eot>", "<unk>"] + list("abcdefghij"))
    plain = Engine(copy.deepcopy(model), vocab, torch.device("cpu"), cpu_layout=False)
    engine = Engine(model, vocab, torch.device("cpu"))  # the CPU layout: CPUDecode
    # every step refills the cache from the newest character: what recomputing a 1-character window sees
    assert tokens(engine, "ab", 10, temperature=0.0) == tokens(plain, "ab", 10, temperature=0.0, use_cache=False)


@needs_cxx
def test_the_compiled_engine_and_minigpt_sample_compile_give_what_recomputation_gives(run):
    engine, plain = Engine.load(run, compile=True), Engine.load(run, cpu_layout=False)
    assert isinstance(engine._decoder(), CompiledDecode)
    T = engine.model.config.block_size
    for prompt in ("", "Prices rose in the café"):
        n = T - 1 - len(prompt)
        assert tokens(engine, prompt, n, temperature=0.0) == tokens(plain, prompt, n, temperature=0.0, use_cache=False)
    assert len(tokens(engine, "The market", 3 * T, temperature=0.0)) == 3 * T  # refills: prefills into its cache
    args = ("--run", run, "--prompt", "The", "--max-new-tokens", 80, "--temperature", 0)
    r, compiled = run_sample(*args), run_sample(*args, "--compile")
    assert r.exit_code == compiled.exit_code == 0 and compiled.stdout == r.stdout and len(r.stdout) > 80
    assert "compiling the decoding step" in compiled.stderr and "compiling" not in r.stderr


def test_same_seed_same_text(run):
    engine = Engine.load(run)
    a = engine.generate("The", max_new_tokens=120, seed=5)
    assert a == engine.generate("The", max_new_tokens=120, seed=5)
    assert a != engine.generate("The", max_new_tokens=120, seed=6)


def test_top_k_and_top_p_keep_only_the_allowed_tokens():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()

    def keep(**p):
        return torch.isfinite(filter_logits(logits, SamplingParams(temperature=1.0, **p)))[0].tolist()

    assert keep(top_k=2) == [True, True, False, False]
    assert keep(top_p=0.8) == [True, True, False, False]
    assert keep(top_p=0.81) == [True, True, True, False]
    assert keep(top_p=0.1) == [True, False, False, False]
    assert keep(top_k=3, top_p=0.6) == [True, True, False, False]


def test_sampling_draws_only_from_the_kept_tokens(run):
    engine = Engine.load(run)
    ids, _ = engine.encode_prompt("The")
    with torch.no_grad():
        logits = engine.model(torch.tensor([ids]))[0][:, -1]
    allowed = set(torch.topk(logits, 3).indices[0].tolist())
    gen = torch.Generator().manual_seed(0)
    drawn = {next(engine.stream(ids, 1, SamplingParams(1.5, top_k=3), gen)) for _ in range(200)}
    assert drawn <= allowed and len(drawn) > 1


def test_stop_at_eot_ends_the_sample_at_the_end_of_a_document(run):
    engine = Engine.load(run)
    eot = engine.vocab.eot
    for seed in range(30):
        stopped = tokens(engine, "", 2000, seed=seed, stop=True, temperature=1.0)
        if eot in stopped:
            break
    assert stopped[-1] == eot and eot not in stopped[:-1]
    longer = tokens(engine, "", len(stopped) + 50, seed=seed, temperature=1.0)
    assert longer[: len(stopped)] == stopped and len(longer) == len(stopped) + 50


def test_unknown_prompt_characters(run):
    r = run_sample("--run", run, "--prompt", "snow ☃ and ☂", "--max-new-tokens", 5)
    assert r.exit_code == 2 and "2 character(s) outside the vocabulary" in r.output and "'☂', '☃'" in r.output
    assert "--allow-unk" in r.output and "Traceback" not in r.output
    r = run_sample("--run", run, "--prompt", "snow ☃", "--max-new-tokens", 5, "--allow-unk")
    assert r.exit_code == 0 and "became <unk>" in r.stderr
    assert r.stdout.startswith("snow ☃")


def test_samples_are_separated_and_unk_is_visible(run):
    r = run_sample("--run", run, "--num-samples", 3, "--max-new-tokens", 30, "--seed", 2)
    assert r.exit_code == 0 and r.stdout.count("sample ") == 3 and "sample 3 of 3" in r.stdout
    engine = Engine.load(run)
    assert engine.show(engine.vocab.unk) == "\ufffd" and "<eot>" in engine.show(engine.vocab.eot)


def assert_error(r, *needles):
    assert r.exit_code != 0 and "Traceback" not in r.output, r.output
    for n in needles:
        assert n in r.output, r.output


@pytest.mark.parametrize(
    "flags,needle",
    [
        (("--temperature", -0.1), "--temperature must be 0 or more"),
        (("--top-p", 0), "--top-p must be in (0, 1]"),
        (("--top-p", 1.5), "--top-p must be in (0, 1]"),
        (("--top-k", 0), "--top-k must be at least 1"),
        (("--max-new-tokens", 0), "must be at least 1"),
        (("--prompt-file", "/nonexistent/prompt.txt"), "cannot read --prompt-file"),
        (("--prompt", "a", "--prompt-file", "x"), "both give a prompt"),
    ],
)
def test_bad_flags(run, flags, needle):
    assert_error(run_sample("--run", run, *flags), needle)


def test_no_run_and_damaged_runs(run, tmp_path):
    assert_error(run_sample(), "no trained run under", "minigpt-train")
    assert_error(run_sample("--run", tmp_path / "nope"), "no such folder")
    for name, damage, needle in [
        ("missing", lambda d: (d / "vocab.json").unlink(), "missing vocab.json"),
        (
            "corrupt",
            lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:500]),
            "not a readable safetensors file",
        ),
        ("shape", lambda d: _edit_config(d, n_embd=32, n_head=4), "does not match config.json: size mismatch for"),
        ("vocab", lambda d: _edit_vocab(d), "vocab.json has"),
    ]:
        bad = tmp_path / name
        shutil.copytree(run, bad)
        damage(bad)
        assert_error(run_sample("--run", bad), needle)


def _edit_config(d: Path, **model):
    cfg = json.loads((d / "config.json").read_text())
    cfg["model"].update(model)
    (d / "config.json").write_text(json.dumps(cfg))


def _edit_vocab(d: Path):
    v = json.loads((d / "vocab.json").read_text())
    v["itos"] = v["itos"][:-1]
    (d / "vocab.json").write_text(json.dumps(v))


def test_invalid_utf8_prompt_file(run, tmp_path):
    f = tmp_path / "p.txt"
    f.write_bytes(b"\xff\xfe bad")
    assert_error(run_sample("--run", run, "--prompt-file", f), "cannot read --prompt-file")


def test_console_script_end_to_end_needs_only_the_run_folder(run, tmp_path):
    alone = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, alone)  # no dataset beside it
    script = shutil.which("minigpt-sample", path=str(Path(sys.executable).parent))
    p = subprocess.run(
        [
            script,
            "--run",
            str(alone),
            "--prompt",
            "The",
            "--max-new-tokens",
            "60",
            "--seed",
            "4",
            "--temperature",
            "0.7",
            "--top-k",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    expected = "The" + Engine.load(alone).generate("The", max_new_tokens=60, seed=4, temperature=0.7, top_k=20)
    assert p.stdout == expected + "\n"


def test_sample_compile_without_a_cpp_compiler_says_so_and_decodes_without_it(run, tmp_path):
    script = shutil.which("minigpt-sample", path=str(Path(sys.executable).parent))
    env = {**os.environ, "CXX": str(tmp_path / "no-such-c++"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    p = subprocess.run(
        [
            script,
            "--run",
            str(run),
            "--prompt",
            "The",
            "--max-new-tokens",
            "40",
            "--temperature",
            "0",
            "--device",
            "cpu",
            "--compile",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert p.returncode == 0, p.stderr
    assert "torch.compile of the decoding step failed" in p.stderr and "decoding without it" in p.stderr
    assert p.stdout == "The" + Engine.load(run).generate("The", max_new_tokens=40, temperature=0) + "\n"
