"""minigpt-export: the folder loads in transformers with no minigpt, its tokenizer gives minigpt's ids,
its logits are minigpt's, its greedy text is minigpt-sample's; for the default recipe (remote code),
GPT-2-shaped runs (GPT2LMHeadModel) and RoPE without QK-norm (NemotronForCausalLM); errors and the
atomic write."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import invoke, run_inprocess
from c4mirror import make_docs, write_c4_mirror
from minigpt import export as export_module
from minigpt.engine import Engine

transformers = pytest.importorskip("transformers")

SHAPES = {
    "default": (),  # RoPE, QK-norm, ReLU², tied: the remote code
    "gpt2-gelu": ("--pos", "learned", "--no-qk-norm", "--mlp", "gelu", "--bias", "--no-tie-weights"),
    "gpt2-relu2": ("--pos", "learned", "--no-qk-norm"),
    "nemotron": ("--no-qk-norm",),  # RoPE without QK-norm
    "nemotron-gelu": ("--no-qk-norm", "--mlp", "gelu", "--bias", "--no-tie-weights"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    from minigpt.cli import train_app

    root = tmp_path_factory.mktemp("export")
    mirror = write_c4_mirror(root / "mirror", [make_docs(150, seed=41)], [make_docs(20, seed=42)])
    assert run_inprocess("--dataset", mirror, "--docs", 150, "--val-docs", 20, "--out", root / "ds").code == 0
    for name, flags in SHAPES.items():
        args = ("--preset", "tiny", "--max-iters", 60, "--data", root / "ds", "--out", root / "runs" / name, *flags)
        r = invoke(train_app, *args)
        assert r.exit_code == 0, r.output
    return root / "runs"


def exported(runs: Path, name: str, tmp_path: Path) -> Path:
    from minigpt.cli import export_app

    r = invoke(export_app, "--run", runs / name, "--out", tmp_path / "hf")
    assert r.exit_code == 0, r.output
    return tmp_path / "hf"


def load(folder: Path):
    tok = transformers.AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    return tok, model


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_the_folder_is_minigpts_model_in_transformers(runs, name, tmp_path):
    folder = exported(runs, name, tmp_path)
    tok, model = load(folder)
    native = name != "default"
    kind = {"gpt2": "GPT2LMHeadModel", "nemotron": "NemotronForCausalLM"}.get(name.split("-")[0], "MiniGPTForCausalLM")
    assert type(model).__name__ == kind
    assert (folder / "modeling_minigpt.py").is_file() != native
    engine = Engine.load(runs / name, cpu_layout=False)
    T = engine.model.config.block_size
    text = (runs.parent / "mirror").glob("**/*.json.gz")  # real text: the validation documents
    import gzip

    docs = [json.loads(line)["text"] for f in sorted(text) for line in gzip.open(f, "rt", encoding="utf-8")]
    sample = "".join(docs)[:2000]
    ids = tok(sample).input_ids
    assert ids == engine.encode_prompt(sample, allow_unk=True)[0]  # <eot> first, as minigpt-sample
    assert tok(sample, add_special_tokens=False).input_ids == engine.vocab.encode(sample)
    known = "".join(c for c in sample if c in set(engine.vocab.itos[2:]))
    assert tok.decode(tok(known, add_special_tokens=False).input_ids) == known
    windows = torch.tensor([ids[i : i + T] for i in range(0, 10 * T, T)])  # (10, T)
    with torch.no_grad():
        ours, theirs = engine.model(windows)[0], model(windows).logits
    assert torch.allclose(theirs, ours, atol=1e-5), (theirs - ours).abs().max()
    prompt = "The market"
    p = engine.encode_prompt(prompt)[0]
    out = model.generate(torch.tensor([p]), max_new_tokens=T - len(p), do_sample=False)
    got = tok.decode(out[0][len(p) :])
    want = engine.generate(prompt, max_new_tokens=T - len(p), temperature=0.0)
    assert got == want[: len(got)] and (len(got) == len(want) or want[len(got) :].startswith("\n<eot>"))


def test_the_model_card_and_the_special_tokens(runs, tmp_path):
    folder = exported(runs, "default", tmp_path)
    card = (folder / "README.md").read_text(encoding="utf-8")
    row = json.loads((runs / "default" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "2 layers, 64 wide, 4 heads" in card and "trust_remote_code=True" in card and "60 of 60 steps" in card
    best = min(
        r["val_loss"]
        for r in map(json.loads, (runs / "default" / "metrics.jsonl").read_text().splitlines())
        if "val_loss" in r
    )
    assert f"{best:.4f} nats per character" in card and row["step"] == 60
    assert (
        f"`minigpt-train --preset tiny --data {runs.parent / 'ds'} --max-iters 60" in card
    )  # what it was trained with
    special = json.loads((folder / "special_tokens_map.json").read_text())
    assert special == {"bos_token": "<eot>", "eos_token": "<eot>", "unk_token": "<unk>"}
    tok, _ = load(folder)
    assert tok.convert_tokens_to_ids(["<eot>", "<unk>"]) == [0, 1] and tok("☃", add_special_tokens=False).input_ids == [
        1
    ]


def test_errors_and_the_atomic_write(runs, tmp_path, monkeypatch):
    from minigpt.cli import export_app

    out = tmp_path / "hf"
    out.mkdir()
    r = invoke(export_app, "--run", runs / "default", "--out", out)
    assert r.exit_code == 2 and "exists" in r.stderr and "--force" in r.stderr
    assert invoke(export_app, "--run", runs / "default", "--out", out, "--force").exit_code == 0
    assert (out / "model.safetensors").is_file()
    damaged = tmp_path / "damaged"
    shutil.copytree(runs / "default", damaged)
    (damaged / "model.safetensors").write_bytes(b"not weights")
    r = invoke(export_app, "--run", damaged, "--out", tmp_path / "x")
    assert r.exit_code == 2 and "not a readable safetensors file" in r.stderr and not (tmp_path / "x").exists()
    (damaged / "model.safetensors").unlink()
    r = invoke(export_app, "--run", damaged, "--out", tmp_path / "x")
    assert r.exit_code == 2 and "missing model.safetensors" in r.stderr

    def fails(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_module, "tokenizer_files", fails)  # halfway through the folder
    with pytest.raises(OSError):
        export_module.export(runs / "default", tmp_path / "y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged", "hf"]  # no y, no temporary folder
