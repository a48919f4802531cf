"""minigpt-export: a run folder as a Hugging Face transformers model folder, loadable with no minigpt.

    minigpt-export --run runs/tiny-gpt2 --out hf/tiny-gpt2
    # then: AutoModelForCausalLM.from_pretrained("hf/tiny-gpt2"), AutoTokenizer.from_pretrained(...)

A run whose model is GPT-2's (`--pos learned --no-qk-norm`: learned positions, LayerNorm blocks,
plain attention, GELU or ReLU², tied or untied head) becomes transformers' own `GPT2LMHeadModel`, so
every tool of the ecosystem takes it: its Conv1D layers hold the transposed weights, and where
minigpt has no biases they are zeros. A run with RoPE but no QK-norm (`--no-qk-norm`) becomes
`NemotronForCausalLM` (LayerNorm blocks whose weight it stores less one, whole-head rotary positions in
minigpt's convention, a plain ReLU² or GELU MLP). The default recipe's per-head RMS-normalised queries
and keys have no native class beside LayerNorm blocks: the folder then carries its modeling code
(hf_modeling.py, as modeling_minigpt.py), loaded with trust_remote_code=True.

The tokenizer (`tokenizer.json`, built with the `tokenizers` library) is one token per character in
minigpt's ids, with `<eot>` and `<unk>` as special tokens at minigpt's ids; it puts `<eot>` (a
document start, as minigpt-sample does) before the text unless `add_special_tokens=False`. The folder
is written beside its destination and renamed into place, so it is whole or absent.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from .checkpoint import SavedRun, load_model, open_run
from .config import make_config
from .data.shards import read_manifest
from .errors import UserError
from .files import write_json_atomic
from .model import GPT

ACTIVATIONS = {"gelu": "gelu", "relu2": "relu2"}  # minigpt's --mlp: transformers' ACT2FN name (exact GELU, ReLU²)


def shared_config(run: SavedRun) -> dict:
    """The config.json keys every exported class has alike."""
    eot = run.vocab.eot
    return {
        "vocab_size": run.model.vocab_size,
        "tie_word_embeddings": run.model.tie_weights,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "torch_dtype": "float32",
    }


REMOTE = "MiniGPTForCausalLM (remote code)"  # what a run with no native class becomes


def native_class(run: SavedRun) -> str:
    """The transformers class that computes the run's model exactly, or REMOTE (modeling_minigpt.py's)."""
    m = run.model
    if m.qk_norm:
        return REMOTE
    return "GPT2LMHeadModel" if m.pos == "learned" else "NemotronForCausalLM"


def train_command(run: SavedRun) -> str:
    """The minigpt-train command that makes this run's configuration: its preset and each setting that
    differs from the preset's (the learning rate and the evaluation budget as they were resolved)."""
    train = run.train
    base = asdict(make_config(train.get("preset", "seed")))
    words = ["minigpt-train", "--preset", str(train.get("preset", "seed"))]
    if run.config.get("dataset", {}).get("folder"):
        words += ["--data", run.config["dataset"]["folder"]]
    for key, value in train.items():
        if key in ("preset", "lr_from", "eval_tokens_from") or key not in base or value == base[key] or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        words += (
            [flag if value else f"--no-{flag[2:]}"]
            if isinstance(value, bool)
            else [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        )
    return " ".join(words)


def nemotron_config(run: SavedRun) -> dict:
    """Nemotron: pre-LN blocks of LayerNorm (its weight stored less 1), rotary positions over whole heads
    in minigpt's convention (halves, base 10000), a plain MLP with ReLU² or GELU, separate q, k, v."""
    m = run.model
    return {
        "architectures": ["NemotronForCausalLM"],
        "model_type": "nemotron",
        "hidden_size": m.n_embd,
        "intermediate_size": 4 * m.n_embd,
        "num_hidden_layers": m.n_layer,
        "num_attention_heads": m.n_head,
        "num_key_value_heads": m.n_head,
        "head_dim": m.n_embd // m.n_head,
        "hidden_act": ACTIVATIONS[m.mlp],
        "max_position_embeddings": m.block_size,
        "norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 1.0},
        "attention_bias": m.bias,
        "mlp_bias": m.bias,
        "use_cache": True,
        **shared_config(run),
    }


def nemotron_weights(model: GPT) -> dict[str, torch.Tensor]:
    """The state dict of NemotronForCausalLM: LayerNorm1P computes with weight + 1, so weight - 1 is stored;
    zero LayerNorm biases where minigpt has none; the fused qkv projection cut in three."""
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    C = model.config.n_embd

    def norm(src: str, dst: str) -> None:
        out[dst + ".weight"] = sd[src + ".weight"] - 1.0
        out[dst + ".bias"] = sd.get(src + ".bias", torch.zeros(C))

    def linear(src: str, dst: str, rows: slice = slice(None)) -> None:
        out[dst + ".weight"] = sd[src + ".weight"][rows].contiguous()
        if src + ".bias" in sd:
            out[dst + ".bias"] = sd[src + ".bias"][rows].contiguous()

    out = {"model.embed_tokens.weight": sd["wte.weight"]}
    for i in range(model.config.n_layer):
        src, dst = f"blocks.{i}.", f"model.layers.{i}."
        norm(src + "ln_1", dst + "input_layernorm")
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            linear(src + "attn.c_attn", dst + f"self_attn.{name}", slice(j * C, (j + 1) * C))
        linear(src + "attn.c_proj", dst + "self_attn.o_proj")
        norm(src + "ln_2", dst + "post_attention_layernorm")
        linear(src + "mlp.c_fc", dst + "mlp.up_proj")
        linear(src + "mlp.c_proj", dst + "mlp.down_proj")
    norm("ln_f", "model.norm")
    if not model.config.tie_weights:
        out["lm_head.weight"] = sd["lm_head.weight"]
    return out


def remote_config(run: SavedRun) -> dict:
    """config.json for modeling_minigpt.py (auto_map: transformers loads it with trust_remote_code=True)."""
    m = run.model
    return {
        "architectures": ["MiniGPTForCausalLM"],
        "model_type": "minigpt",
        "auto_map": {
            "AutoConfig": "modeling_minigpt.MiniGPTConfig",
            "AutoModelForCausalLM": "modeling_minigpt.MiniGPTForCausalLM",
        },
        **{k: getattr(m, k) for k in ("block_size", "n_layer", "n_head", "n_embd", "bias", "mlp", "pos", "qk_norm")},
        "use_cache": False,  # the remote code recomputes the window
        **shared_config(run),
    }


def remote_weights(model: GPT) -> dict[str, torch.Tensor]:
    """minigpt's own state dict (modeling_minigpt.py keeps model.py's names), the tied head stored once."""
    sd = {k: v.detach().float().clone().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_weights:
        del sd["lm_head.weight"]
    return sd


def gpt2_config(run: SavedRun) -> dict:
    m = run.model
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "n_positions": m.block_size,
        "n_embd": m.n_embd,
        "n_layer": m.n_layer,
        "n_head": m.n_head,
        "n_inner": 4 * m.n_embd,
        "activation_function": ACTIVATIONS[m.mlp],
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "layer_norm_epsilon": 1e-5,
        "scale_attn_weights": True,
        "use_cache": True,
        **shared_config(run),
    }


def gpt2_weights(model: GPT) -> dict[str, torch.Tensor]:
    """The state dict of GPT2LMHeadModel: Conv1D weights are (in, out), the transpose of Linear's; zero
    biases where minigpt has none."""
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}

    def bias_of(key: str, size: int) -> torch.Tensor:
        return sd.get(key, torch.zeros(size))

    out = {"transformer.wte.weight": sd["wte.weight"], "transformer.wpe.weight": sd["wpe.weight"]}
    for i in range(model.config.n_layer):
        src, dst = f"blocks.{i}.", f"transformer.h.{i}."
        for ln in ("ln_1", "ln_2"):
            out[dst + f"{ln}.weight"] = sd[src + f"{ln}.weight"]
            out[dst + f"{ln}.bias"] = bias_of(src + f"{ln}.bias", model.config.n_embd)
        for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            w = sd[src + f"{name}.weight"]  # (out, in)
            out[dst + f"{name}.weight"] = w.t().contiguous()  # Conv1D: (in, out)
            out[dst + f"{name}.bias"] = bias_of(src + f"{name}.bias", w.size(0))
    out["transformer.ln_f.weight"] = sd["ln_f.weight"]
    out["transformer.ln_f.bias"] = bias_of("ln_f.bias", model.config.n_embd)
    if not model.config.tie_weights:
        out["lm_head.weight"] = sd["lm_head.weight"]
    return out


def tokenizer_files(run: SavedRun, folder: Path) -> None:
    """tokenizer.json (one token per character, minigpt's ids), tokenizer_config.json, special_tokens_map.json."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, processors

    vocab = run.vocab
    ids = {token: i for i, token in enumerate(vocab.itos)}
    eot, unk = vocab.itos[vocab.eot], vocab.itos[vocab.unk]
    tok = Tokenizer(models.BPE(vocab=ids, merges=[], unk_token=unk))  # no merges: every character a token
    tok.add_special_tokens([AddedToken(eot, special=True), AddedToken(unk, special=True)])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{eot} $A", pair=f"{eot} $A {eot} $B", special_tokens=[(eot, vocab.eot)]
    )
    tok.decoder = decoders.Fuse()  # characters joined as they are, no spaces between
    tok.save(str(folder / "tokenizer.json"))
    special = {"bos_token": eot, "eos_token": eot, "unk_token": unk}
    write_json_atomic(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": run.model.block_size,
            "clean_up_tokenization_spaces": False,
            **special,
        },
    )
    write_json_atomic(folder / "special_tokens_map.json", special)


def model_card(run: SavedRun, kind: str) -> str:
    """README.md: what the model is, what it was trained on, how well it did, how to load it."""
    from .runs import read_run

    row = read_run(run.path)
    dataset = run.config.get("dataset", {}).get("folder")
    manifest = (read_manifest(Path(dataset)) if dataset else None) or {}
    source = manifest.get("source", {}).get("dataset") or manifest.get("source", {}).get("data_files") or "unknown"
    m = run.model
    loss = (
        f"{row.best_val_loss:.4f} nats per character ({row.best_val_bpc:.4f} bits per character)"
        if row.best_val_loss
        else "not evaluated"
    )
    remote = ", trust_remote_code=True" if kind == REMOTE else ""
    return f"""---
library_name: transformers
tags: [minigpt, character-level, {"custom_code" if kind == REMOTE else kind.removesuffix("LMHeadModel").removesuffix("ForCausalLM").lower()}]
---

# {run.path.name}

A character-level GPT trained with [minigpt](https://github.com/) and exported by `minigpt-export`
as transformers' `{kind}`.

- **Shape:** {m.n_layer} layers, {m.n_embd} wide, {m.n_head} heads, a window of {m.block_size} characters,
  {row.params or 0:,} parameters; {m.pos} positions, {m.mlp} MLP, {"tied" if m.tie_weights else "untied"} head.
- **Data:** {source} (minigpt dataset folder `{Path(dataset).name if dataset else "?"}`, manifest
  sha256 `{run.config.get("dataset", {}).get("manifest_sha256", "?")}`), {len(run.vocab)} characters in the vocabulary.
- **Training:** {row.step or 0:,} of {row.max_iters or 0:,} steps; `{train_command(run)}`.
- **Best validation loss:** {loss}.

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained("{run.path.name}")
model = AutoModelForCausalLM.from_pretrained("{run.path.name}"{remote})
ids = tok("The weather", return_tensors="pt").input_ids  # <eot> (a document start) first, as minigpt does
out = model.generate(ids, max_new_tokens=20, do_sample=False)
print(tok.decode(out[0], skip_special_tokens=True))
```

The window is {m.block_size} characters: minigpt-sample goes on past it by refilling from the last
half window; transformers' `generate` stops at it.
"""


def export(run_path: Path, out: Path, force: bool = False) -> str:
    """Write the folder; the class it became. Atomic: built beside `out`, renamed into place."""
    run = open_run(run_path)
    if out.exists() and not force:
        raise UserError(f"--out {out} exists", "pick another folder, or add --force to replace it")
    model, kind = load_model(run, torch.device("cpu")), native_class(run)
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if kind == "GPT2LMHeadModel":
            weights, config = gpt2_weights(model), gpt2_config(run)
        elif kind == "NemotronForCausalLM":
            weights, config = nemotron_weights(model), nemotron_config(run)
        else:
            weights, config = remote_weights(model), remote_config(run)
            shutil.copyfile(Path(__file__).with_name("hf_modeling.py"), tmp / "modeling_minigpt.py")
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        write_json_atomic(tmp / "config.json", config)
        eot = run.vocab.eot
        generation = {"bos_token_id": eot, "eos_token_id": eot, "pad_token_id": eot, "use_cache": config["use_cache"]}
        write_json_atomic(tmp / "generation_config.json", generation)
        tokenizer_files(run, tmp)
        (tmp / "README.md").write_text(model_card(run, kind), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return kind
