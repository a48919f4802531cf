"""Fine-tuning (minigpt-train --init-from) and minigpt-eval, on the CPU: against training from scratch,
against the trainer's own evaluation, on text files, and their bad input."""

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, strategies as st

from c4mirror import make_docs
from conftest import invoke, metrics, run_inprocess, stop_at
from minigpt.data.loader import TokenData
from test_train import without_timing

TEXT_A = "\n\n".join(d["text"] for d in make_docs(400, seed=21))  # non-ASCII in every third document
TEXT_B = "\n\n".join(d["text"] for d in make_docs(150, seed=22))


def cli(app: str, *args):
    from minigpt import cli as module

    return invoke(getattr(module, app), *args)


def assert_error(r, *needles):
    assert r.exit_code != 0 and "Traceback" not in r.output, r.output
    for needle in needles:
        assert needle in r.output, r.output


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """A run trained on text A (tiny preset, 200 steps), and text B prepared with its vocabulary."""
    root = tmp_path_factory.mktemp("finetune")
    (root / "a.txt").write_text(TEXT_A)
    (root / "b.txt").write_text(TEXT_B)
    assert run_inprocess("--data-files", root / "a.txt", "--out", root / "a").code == 0
    r = cli("train_app", "--preset", "tiny", "--data", root / "a", "--out", root / "run-a", "--eval-tokens", 4096)
    assert r.exit_code == 0, r.output
    r = run_inprocess("--data-files", root / "b.txt", "--vocab", root / "run-a", "--out", root / "b")
    assert r.code == 0, r.output
    return {"root": root, "a": root / "a", "b": root / "b", "run": root / "run-a"}


def last_val(run: Path) -> float:
    return [r for r in metrics(run) if "val_loss" in r][-1]["val_loss"]


def test_fine_tuning_beats_the_same_steps_from_scratch(base, tmp_path):
    args = ("--preset", "tiny", "--max-iters", 40, "--eval-interval", 20, "--data", base["b"], "--eval-tokens", 4096)
    r = cli("train_app", *args, "--init-from", base["run"], "--out", tmp_path / "tuned")
    assert r.exit_code == 0, r.output
    assert f"starting from the weights of {base['run']} (its step 200)" in r.output
    assert cli("train_app", *args, "--out", tmp_path / "scratch").exit_code == 0
    assert last_val(tmp_path / "tuned") < last_val(tmp_path / "scratch") - 0.2
    config = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert config["init_from"]["run"] == str(base["run"].resolve()) and config["init_from"]["step"] == 200
    assert len(config["init_from"]["weights_sha256"]) == 64
    source = json.loads((base["run"] / "config.json").read_text())["model"]
    assert {k: v for k, v in config["model"].items() if k != "dropout"} == {
        k: v for k, v in source.items() if k != "dropout"
    }
    # the default run folder is named from the dataset and the source run
    r = cli("train_app", "--preset", "tiny", "--max-iters", 5, "--data", base["b"], "--init-from", base["run"])
    assert r.exit_code == 0 and Path("runs/b-from-run-a/model.safetensors").is_file(), r.output


def test_a_fine_tuning_run_resumes_byte_identical(base, tmp_path, monkeypatch):
    args = (
        "--preset",
        "tiny",
        "--max-iters",
        30,
        "--eval-interval",
        10,
        "--data",
        base["b"],
        "--dropout",
        0.1,
        "--eval-tokens",
        2048,
    )
    assert cli("train_app", *args, "--init-from", base["run"], "--out", tmp_path / "whole").exit_code == 0
    stop_at(monkeypatch, 13)
    assert cli("train_app", *args, "--init-from", base["run"], "--out", tmp_path / "parts").exit_code == 143
    monkeypatch.undo()
    r = cli("train_app", *args, "--resume", "--out", tmp_path / "parts")  # its shape from its own config.json
    assert r.exit_code == 0, r.output
    assert (tmp_path / "parts" / "model.safetensors").read_bytes() == (
        tmp_path / "whole" / "model.safetensors"
    ).read_bytes()
    assert without_timing(metrics(tmp_path / "parts")) == without_timing(metrics(tmp_path / "whole"))


def test_eval_on_the_run_s_own_dataset_is_the_trainer_s_last_evaluation(base):
    rows = [r for r in metrics(base["run"]) if "val_loss" in r]
    r = cli("eval_app", "--run", base["run"], "--json")
    assert r.exit_code == 0, r.output
    score = json.loads(r.stdout)
    assert score["loss"] == pytest.approx(rows[-1]["val_loss"], rel=1e-6)
    assert score["bits_per_char"] == pytest.approx(rows[-1]["val_bpc"], rel=1e-6)
    assert score["windows"] == 4096 // 32 and score["tokens"] == 4096
    train = json.loads(cli("eval_app", "--run", base["run"], "--split", "train", "--json").stdout)
    assert train["loss"] == pytest.approx(rows[-1]["train_eval_loss"], rel=1e-6)
    r = cli("eval_app", "--run", base["run"])
    assert f"loss {score['loss']:.4f} nats/char" in r.stdout and "bits/byte" in r.stdout


def test_eval_follows_the_runs_precision_rule(base, tmp_path, monkeypatch):
    """A run the rule put in bf16 autocast (a CPU with bf16 instructions, 128 wide) is evaluated in bf16 too:
    minigpt-eval gives the trainer's last validation loss; on a CPU without them, fp32's, close to it."""
    from minigpt import device

    monkeypatch.setattr(device, "cpu_bf16", lambda: "avx512_bf16")
    run = tmp_path / "wide"
    r = cli(
        "train_app",
        "--preset",
        "tiny",
        "--n-embd",
        128,
        "--max-iters",
        10,
        "--eval-interval",
        10,
        "--eval-tokens",
        2048,
        "--data",
        base["a"],
        "--out",
        run,
    )
    assert r.exit_code == 0, r.output
    assert json.loads((run / "config.json").read_text())["runtime"]["dtype"] == "bfloat16"
    trained = last_val(run)
    score = json.loads(cli("eval_app", "--run", run, "--json").stdout)
    assert score["loss"] == pytest.approx(trained, rel=1e-6)
    monkeypatch.setattr(device, "cpu_bf16", lambda: None)
    fp32 = json.loads(cli("eval_app", "--run", run, "--json").stdout)["loss"]
    assert fp32 != trained and fp32 == pytest.approx(trained, rel=1e-2)


def test_eval_of_a_text_equals_eval_of_a_dataset_prepared_from_it(base, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(TEXT_B[:5000])
    r = run_inprocess("--data-files", text, "--val-data-files", text, "--vocab", base["run"], "--out", tmp_path / "t")
    assert r.code == 0, r.output
    on_text = json.loads(cli("eval_app", "--run", base["run"], "--text", text, "--json").stdout)
    on_data = json.loads(
        cli("eval_app", "--run", base["run"], "--data", tmp_path / "t", "--eval-tokens", 0, "--json").stdout
    )
    for key in ("windows", "tokens", "chars", "bytes", "unk", "eot"):
        assert on_text[key] == on_data[key], key
    assert on_text["loss"] == pytest.approx(on_data["loss"], rel=1e-6)


def test_eval_of_a_test_split_is_all_of_it_and_never_what_the_trainer_scored(base, tmp_path):
    """--split test scores all of a test split by default (the run's budget caps val, not test): the
    figure of --text on the same file; sliding windows too; and training never reads the test split."""
    text = tmp_path / "t.txt"
    text.write_text(TEXT_B[:6000])
    r = run_inprocess(
        "--data-files",
        base["root"] / "a.txt",
        "--test-data-files",
        text,
        "--vocab",
        base["run"],
        "--out",
        tmp_path / "t",
    )
    assert r.code == 0, r.output
    for extra in ((), ("--stride", 8)):
        on_text = json.loads(cli("eval_app", "--run", base["run"], "--text", text, *extra, "--json").stdout)
        on_test = json.loads(
            cli("eval_app", "--run", base["run"], "--data", tmp_path / "t", "--split", "test", *extra, "--json").stdout
        )
        for key in ("windows", "tokens", "chars", "bytes", "unk", "eot"):
            assert on_text[key] == on_test[key], (key, extra)
        assert on_text["loss"] == pytest.approx(on_test["loss"], rel=1e-6) and on_test["tokens"] > 4096
    capped = json.loads(cli("eval_app", "--run", base["run"], "--data", tmp_path / "t", "--json").stdout)
    assert capped["tokens"] == 4096  # val: the run's --eval-tokens 4096
    r = cli("train_app", "--preset", "tiny", "--max-iters", 10, "--data", tmp_path / "t", "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    assert TokenData(tmp_path / "t").tokens("test") > 0 and "test" not in json.dumps(metrics(tmp_path / "r"))


def test_bits_per_byte_count_the_utf8_length(base, tmp_path):
    text = "Caf\u00e9 \u2014 na\u00efve \u65e5\u672c. " * 40 + "The end."  # 1, 2 and 3-byte characters
    (tmp_path / "u.txt").write_text(text)
    s = json.loads(cli("eval_app", "--run", base["run"], "--text", tmp_path / "u.txt", "--json").stdout)
    known = json.loads((base["run"] / "vocab.json").read_text())["itos"]
    stream = list(text) + ["<eot>"]
    targets = stream[1 : 1 + s["windows"] * 32]
    assert s["tokens"] == len(targets) and s["unk"] == sum(c not in known for c in targets if c != "<eot>")
    assert s["bytes"] == sum(1 if c == "<eot>" or c not in known else len(c.encode("utf-8")) for c in targets)
    assert s["bytes"] > s["chars"]
    assert s["bits_per_byte"] == pytest.approx(s["loss"] * s["tokens"] / math.log(2) / s["bytes"])


def test_fine_tuning_and_eval_errors(base, tmp_path):
    run, a, b = base["run"], base["a"], base["b"]
    other = tmp_path / "other.txt"
    other.write_text("Entirely different characters: 0123456789 +-*/ qwerty\n" * 50)
    assert run_inprocess("--data-files", other, "--out", tmp_path / "other").code == 0
    tiny = ("--preset", "tiny", "--max-iters", 5)
    assert_error(
        cli("train_app", *tiny, "--data", b, "--init-from", run, "--n-layer", 3, "--mlp", "gelu"),
        "leave out --n-layer, --mlp",
    )
    assert_error(
        cli("train_app", *tiny, "--data", b, "--init-from", run, "--resume", "--out", tmp_path / "x"),
        "--init-from starts a new run, and --resume continues one",
    )
    assert_error(
        cli("train_app", *tiny, "--data", tmp_path / "other", "--init-from", run, "--out", tmp_path / "x"),
        "another vocabulary",
        f"--vocab {run}",
    )
    assert_error(
        cli("train_app", *tiny, "--data", b, "--init-from", tmp_path / "nope"), "--init-from", "no such folder"
    )
    assert_error(cli("eval_app", "--run", run, "--data", tmp_path / "other"), "another vocabulary", "--vocab")
    assert_error(cli("eval_app", "--run", run, "--split", "tests"), "--split tests", "val, test or train")
    assert_error(cli("eval_app", "--run", run, "--split", "test"), "has no test split", "--test-split NAME")
    assert_error(cli("eval_app", "--run", run, "--text", tmp_path / "missing.txt"), "cannot read it")
    (tmp_path / "latin.txt").write_bytes("caf\u00e9\n".encode("latin-1"))
    assert_error(cli("eval_app", "--run", run, "--text", tmp_path / "latin.txt"), "not UTF-8", "byte 3")
    # damaged run folders
    for damage, needle in (
        ("config", "cannot read config.json"),
        ("choice", "cannot read config.json"),
        ("weights", "does not match config.json"),
    ):
        broken = tmp_path / f"broken-{damage}"
        broken.mkdir()
        for name in ("config.json", "vocab.json", "model.safetensors"):
            (broken / name).write_bytes((run / name).read_bytes())
        config = json.loads((run / "config.json").read_text())
        if damage == "config":
            (broken / "config.json").write_text("{not json")
        elif damage == "choice":
            config["model"]["mlp"] = "swish"
            (broken / "config.json").write_text(json.dumps(config))
        else:
            config["model"]["n_embd"] = 128
            (broken / "config.json").write_text(json.dumps(config))
        assert_error(cli("eval_app", "--run", broken), needle)
        assert_error(cli("train_app", *tiny, "--data", b, "--init-from", broken, "--out", tmp_path / "x"), needle)
    assert not (tmp_path / "x").exists()
    assert torch.load(run / "train_state.pt", weights_only=True)["step"] == 200  # the source run is untouched
    assert a.is_dir()


_WHOLE: dict = {}


@given(
    batch=st.integers(1, 48),
    budget=st.sampled_from([0, 32, 33, 100, 1000, 4096]),
    split=st.sampled_from(["val", "train"]),
)
def test_eval_gives_the_same_figure_whatever_its_batch_size(base, batch, budget, split):
    """The windows are cut into batches of --batch-size (the last one shorter): the loss and every count are
    those of all the windows in one batch."""
    args = ("--run", base["run"], "--eval-tokens", budget, "--split", split, "--json")
    key = (budget, split)
    if key not in _WHOLE:
        _WHOLE[key] = json.loads(cli("eval_app", *args, "--batch-size", 100_000).stdout)
    whole = _WHOLE[key]
    score = json.loads(cli("eval_app", *args, "--batch-size", batch).stdout)
    n_val = TokenData(base["a"]).tokens("val")  # one shard; budget 0: all of val, as many train tokens
    assert (
        score["windows"]
        == whole["windows"]
        == (max(budget // 32, 1) if budget else (n_val - 1) // 32 if split == "val" else n_val // 32)
    )
    for k in ("tokens", "chars", "bytes", "unk", "eot"):
        assert score[k] == whole[k], k
    assert score["loss"] == pytest.approx(whole["loss"], rel=1e-5)
