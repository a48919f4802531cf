"""The learning rate a run gets: the preset's, the rule's for a shape given by flags, or --lr."""

import json
import math

import pytest

from minigpt.config import PRESETS, make_config
from test_train import TINY, run_train


# README's preset table and rule, written out: what a user reads, not what the code computes
README_LR = {"seed": 3e-4, "A": 3e-5, "B": 3e-4, "C": 6e-4, "tiny": 1e-2}


def readme_rule(n_embd: int) -> float:
    """3.16e-3 from 128 wide up, half a decade more per halving of the width below 128."""
    return 10 ** (-2.5 + 0.5 * max(math.log2(128 / n_embd), 0))


@pytest.mark.parametrize("preset", list(README_LR))
def test_a_preset_keeps_its_own_lr(preset):
    assert set(PRESETS) == set(README_LR)
    cfg = make_config(preset)
    assert cfg.lr == README_LR[preset] and cfg.lr_from == "preset"
    # flags that leave the shape and batch as they are leave the preset's lr too
    same = make_config(preset, n_layer=cfg.n_layer, max_iters=7, dropout=0.0)
    assert same.lr == README_LR[preset] and same.lr_from == "preset"


@pytest.mark.parametrize(
    "shape,rate",
    [
        (dict(n_layer=4, n_head=4, n_embd=128, batch_size=12), 3.16e-3),
        (dict(n_layer=4, n_head=4, n_embd=128, batch_size=32), 3.16e-3),
        (dict(n_layer=6, n_head=6, n_embd=192, batch_size=32), 3.16e-3),
        (dict(n_layer=8, n_head=8, n_embd=384, batch_size=32), 3.16e-3),
        (dict(n_layer=2, n_head=4, n_embd=64), 1e-2),
        (dict(n_layer=2, n_head=2, n_embd=32), 3.16e-2),
    ],
)
def test_a_shape_given_by_flags_gets_the_rule_s_lr_and_lr_wins(shape, rate):
    cfg = make_config("seed", **shape)
    assert cfg.lr == rate and cfg.lr_from == "rule" and cfg.lr != README_LR["seed"]
    assert cfg.final_lr == pytest.approx(rate / 10)
    explicit = make_config("seed", **shape, lr=1.5e-3)
    assert explicit.lr == 1.5e-3 and explicit.lr_from == "flag"


@pytest.mark.parametrize(
    "shape,best",
    [  # the best of each sweep's grid (BENCHMARKS.md, bench/lr_sweep.py)
        (dict(n_layer=2, n_head=4, n_embd=64, block_size=32, batch_size=16), 1e-2),
        (dict(n_layer=4, n_head=4, n_embd=128, batch_size=12), 3.16e-3),
        (dict(n_layer=4, n_head=4, n_embd=128, batch_size=32), 3.16e-3),
        (dict(n_layer=6, n_head=6, n_embd=192, batch_size=32), 3.16e-3),
        (dict(n_layer=8, n_head=8, n_embd=384, batch_size=32), 3.16e-3),
    ],
)
def test_the_rule_gives_each_swept_shape_its_best_rate(shape, best):
    cfg = make_config("seed", **shape)
    assert cfg.lr == best and cfg.lr_from == "rule"
    assert make_config("seed", n_layer=4, n_head=4, n_embd=96).lr == pytest.approx(readme_rule(96), rel=1e-2)  # between


def test_the_lr_and_its_origin_are_recorded_and_said(dataset, tmp_path):
    r = run_train(*TINY, "--max-iters", 2, "--n-embd", 96, "--n-head", 4, "--data", dataset, "--out", tmp_path / "a")
    assert r.exit_code == 0, r.output
    train = json.loads((tmp_path / "a" / "config.json").read_text())["train"]
    assert train["lr_from"] == "rule" and train["lr"] == pytest.approx(readme_rule(96), rel=1e-2) == 0.0051
    assert f"peak learning rate {train['lr']:g}: the rule for a shape given by flags" in r.output
    r = run_train(*TINY, "--max-iters", 2, "--lr", 2e-3, "--data", dataset, "--out", tmp_path / "b")
    assert "peak learning rate 0.002: --lr" in r.output
    train = json.loads((tmp_path / "b" / "config.json").read_text())["train"]
    assert (train["lr"], train["lr_from"]) == (2e-3, "flag")
    r = run_train(*TINY, "--max-iters", 2, "--data", dataset, "--out", tmp_path / "c")
    assert "peak learning rate 0.01: the tiny preset's" in r.output
