"""The evaluation budget a run gets on a CPU: README's rule (evaluations within ~10% of the run's time),
--eval-tokens over it, the run's own kept on --resume, and minigpt-eval reproducing the trainer's figure."""

import json

import pytest

from conftest import invoke, metrics, stop_at
from minigpt.config import make_config
from test_train import run_train


def readme_budget(max_iters: int, eval_interval: int, tokens_per_step: int, block_size: int) -> int:
    """README: evaluations (val and train, every eval_interval steps and at the end) cost 0.25 of a trained
    token's time a token and take at most 10% of the run: whole windows, 64 at least, 1,000,000 tokens at most."""
    evals = -(-max_iters // eval_interval)
    tokens = (0.1 / 0.9) * max_iters * tokens_per_step / (0.25 * 2 * evals)
    return min(max(int(tokens // block_size), 64), 1_000_000 // block_size) * block_size


def config_of(run) -> dict:
    return json.loads((run / "config.json").read_text())["train"]


def test_a_cpu_run_without_eval_tokens_gets_the_rule_s_budget_and_says_so(dataset, tmp_path):
    run = tmp_path / "run"
    r = run_train("--preset", "tiny", "--max-iters", 60, "--eval-interval", 20, "--data", dataset, "--out", run)
    assert r.exit_code == 0, r.output
    want = readme_budget(60, 20, 16 * 32, 32)
    train = config_of(run)
    assert (train["eval_tokens"], train["eval_tokens_from"]) == (want, "rule")
    assert (
        f"evaluation every 20 steps and at the end: {want:,} tokens of val and of train (the CPU rule: at most "
        "~10% of the run's time; --eval-tokens N to choose)"
    ) in r.output
    from minigpt.cli import eval_app

    score = json.loads(invoke(eval_app, "--run", run, "--json").stdout)  # the run's budget, the run's figure
    assert score["windows"] == want // 32
    assert score["loss"] == pytest.approx([m for m in metrics(run) if "val_loss" in m][-1]["val_loss"], rel=1e-6)


@pytest.mark.parametrize(
    "preset,flags",
    [
        ("tiny", {}),
        ("seed", {}),
        ("seed", dict(n_layer=4, n_head=4, n_embd=128, batch_size=12)),
        ("seed", dict(max_iters=3, eval_interval=3, batch_size=4)),
    ],
)
def test_the_rule_at_the_shapes_users_run(preset, flags):
    from minigpt.config import eval_rule

    cfg = make_config(preset, **flags)
    assert eval_rule(cfg) == readme_budget(cfg.max_iters, cfg.eval_interval, cfg.tokens_per_step, cfg.block_size)
    if preset == "seed" and not flags:  # 5,000 steps of 8,192 tokens: a third of the GPU default
        assert eval_rule(cfg) == 455_104
    if flags.get("max_iters") == 3:  # the 11-minute command: one batch of windows
        assert eval_rule(cfg) == 64 * 64


def test_eval_tokens_wins_and_resume_keeps_the_run_s_budget(dataset, tmp_path, monkeypatch):
    r = run_train(
        "--preset", "tiny", "--max-iters", 20, "--eval-tokens", 1024, "--data", dataset, "--out", tmp_path / "f"
    )
    assert r.exit_code == 0 and "1,024 tokens of val and of train (--eval-tokens)" in r.output, r.output
    assert (config_of(tmp_path / "f")["eval_tokens"], config_of(tmp_path / "f")["eval_tokens_from"]) == (1024, "flag")
    run = tmp_path / "run"
    stop_at(monkeypatch, 25)
    args = ("--preset", "tiny", "--max-iters", 100, "--eval-interval", 20, "--data", dataset, "--out", run)
    assert run_train(*args).exit_code == 143
    monkeypatch.undo()
    budget = config_of(run)["eval_tokens"]
    assert budget == readme_budget(100, 20, 512, 32)
    r = run_train(*args[:5], 40, *args[6:], "--resume")  # evaluating half as often would get more tokens: not here
    assert r.exit_code == 0, r.output
    assert readme_budget(100, 40, 512, 32) > budget and config_of(run)["eval_tokens"] == budget
    assert f"{budget:,} tokens of val and of train (the CPU rule" in r.output


def test_a_val_split_under_the_budget_is_said_to_be_scored_whole(dataset, tmp_path):
    from minigpt.data.loader import TokenData

    val = TokenData(dataset).tokens("val")
    r = run_train(
        "--preset", "tiny", "--max-iters", 2, "--eval-tokens", val + 32, "--data", dataset, "--out", tmp_path / "r"
    )
    assert r.exit_code == 0, r.output
    assert (
        f"the whole val split ({val:,} tokens, under the budget) and {val + 32:,} tokens of train (--eval-tokens)"
        in r.output
    )
