"""Property tests of the loader's cuts, against plain references written here: the fixed evaluation
windows (val: consecutive, every target once; train: seeded, distinct) and their batches, and the
training batch draw with a step's micro-batches split among torchrun's processes.
Shards are made small (--shard-tokens) so that windows and batches meet every shard boundary."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

from conftest import run_inprocess
from minigpt.data.loader import TokenData
from minigpt.distributed import Dist, micro_batches
from minigpt.errors import UserError


def make_dataset(folder: Path, docs: list[str], shard_tokens: int) -> TokenData:
    path = folder / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    r = run_inprocess(
        "--data-files",
        path,
        "--docs",
        len(docs) - 1,
        "--val-docs",
        1,
        "--shard-tokens",
        shard_tokens,
        "--out",
        folder / "ds",
    )
    assert r.code == 0, r.output
    return TokenData(folder / "ds")


def shards_of(folder: Path, split: str) -> list[np.ndarray]:
    """The split's shards, read plainly from their files."""
    m = json.loads((folder / "manifest.json").read_text())
    return [
        np.fromfile(folder / s["file"], dtype=np.dtype(m["dtype"]).newbyteorder("<")).astype(np.int64)
        for s in m["splits"][split]["shards"]
    ]


def all_windows(shards: list[np.ndarray], T: int) -> list[tuple[int, int]]:
    """Every (shard, start) of a window of T + 1 tokens inside one shard, in order."""
    return [(i, j) for i, s in enumerate(shards) for j in range(len(s) - T)]


DATASET = st.fixed_dictionaries(
    {
        "docs": st.lists(st.text("abc \u00e9\n", min_size=1, max_size=60), min_size=3, max_size=25),
        "val_doc": st.text("abcd\u00e9", min_size=20, max_size=400),
        "shard_tokens": st.integers(4, 120),
    }
)


def build(tmp: str, spec: dict) -> TokenData:
    return make_dataset(Path(tmp), spec["docs"] + [spec["val_doc"]], spec["shard_tokens"])


@given(spec=DATASET, T=st.integers(1, 24), budget=st.integers(0, 400), B=st.integers(1, 9))
def test_val_windows_are_consecutive_and_score_every_target_once(spec, T, budget, B):
    with tempfile.TemporaryDirectory() as tmp:
        data = build(tmp, spec)
        shards = shards_of(data.folder, "val")
        want = [(i, k * T) for i, s in enumerate(shards) for k in range((len(s) - 1) // T)]
        if not want:  # no shard holds a window: minigpt-train refuses the block size before it starts
            with pytest.raises(UserError, match=f"block_size {T} does not fit the (train|val) split"):
                data.check_block_size(T)
            return
        if budget:
            want = want[: max(budget // T, 1)]
        windows = data.eval_windows("val", T, budget, 0)
        assert [tuple(w) for w in windows.tolist()] == want
        expected = [shards[i][j : j + T + 1] for i, j in want]
        batches = list(data.eval_batches("val", windows, B, T))
        assert [len(b) for b in batches] == [min(B, len(want) - k) for k in range(0, len(want), B)]
        assert np.array_equal(np.concatenate(batches), np.stack(expected))
        # the targets of consecutive windows tile each shard: every token after the first, once
        for i, s in enumerate(shards):
            targets = [t for (si, j) in want if si == i for t in range(j + 1, j + T + 1)]
            assert targets == list(range(1, len(targets) + 1))


@given(spec=DATASET, T=st.integers(1, 24), budget=st.integers(0, 300), seed=st.integers(0, 2**32 - 1))
def test_train_windows_are_distinct_windows_inside_a_shard_fixed_by_the_seed(spec, T, budget, seed):
    with tempfile.TemporaryDirectory() as tmp:
        data = build(tmp, spec)
        shards = shards_of(data.folder, "train")
        every = all_windows(shards, T)
        if not every:
            with pytest.raises(UserError, match=f"block_size {T} does not fit the (train|val) split"):
                data.check_block_size(T)
            return
        n = min(len(every), max((budget or data.tokens("val")) // T, 1))
        if budget:
            n = min(n, max(budget // T, 1))
        windows = data.eval_windows("train", T, budget, seed)
        got = [tuple(w) for w in windows.tolist()]
        assert len(got) == n == len(set(got)) and set(got) <= set(every)
        assert got == sorted(got, key=every.index)  # in the data's order
        assert np.array_equal(windows, data.eval_windows("train", T, budget, seed))
        rows = np.concatenate(list(data.eval_batches("train", windows, 5, T)))
        assert np.array_equal(rows, np.stack([shards[i][j : j + T + 1] for i, j in got]))


@given(
    spec=DATASET,
    T=st.integers(1, 24),
    B=st.integers(1, 12),
    seed=st.integers(0, 2**63 - 1),
    step=st.integers(0, 10**9),
    per_rank=st.integers(1, 3),
    world=st.integers(1, 4),
)
def test_a_step_s_batches_split_among_processes_are_one_process_s(spec, T, B, seed, step, per_rank, world):
    """Each micro-batch is B windows drawn uniformly over every start of every shard, by 64-bit Philox
    draws keyed (seed; micro, step) taken modulo the number of windows (data/loader.py's rule); K processes,
    each drawing its own micro-batches of the step, draw exactly what one process draws."""
    with tempfile.TemporaryDirectory() as tmp:
        data = build(tmp, spec)
        shards = shards_of(data.folder, "train")
        every = all_windows(shards, T)
        if not every:
            return
        accum = per_rank * world
        one = [data.batch(seed, step, m, B, T) for m in micro_batches(accum, Dist())]
        for m, batch in enumerate(one):
            draws = np.random.Philox(key=seed, counter=[0, 0, m, step]).random_raw(B)
            picked = [every[int(r % np.uint64(len(every)))] for r in draws]
            assert np.array_equal(batch, np.stack([shards[i][j : j + T + 1] for i, j in picked]))
        ranks = [list(micro_batches(accum, Dist(rank=r, world_size=world))) for r in range(world)]
        assert [m for micros in ranks for m in micros] == list(range(accum))
        shared = [data.batch(seed, step, m, B, T) for micros in ranks for m in micros]
        assert all(np.array_equal(a, b) for a, b in zip(shared, one))


@given(accum=st.integers(1, 64), world=st.integers(2, 8))
def test_micro_batches_that_cannot_be_shared_evenly_are_refused(accum, world):
    if accum % world == 0:
        assert len(micro_batches(accum, Dist(rank=world - 1, world_size=world))) == accum // world
        return
    with pytest.raises(UserError, match=f"--grad-accum {accum} cannot be shared among {world} processes"):
        micro_batches(accum, Dist(rank=0, world_size=world))


@given(
    lengths=st.lists(st.integers(0, 120), min_size=1, max_size=4),
    T=st.integers(1, 24),
    data=st.data(),
    budget=st.integers(0, 300),
)
def test_sliding_windows_score_every_target_once_with_their_context(lengths, T, data, budget):
    from minigpt.evaluate import sliding_windows

    S = data.draw(st.integers(1, T))
    windows = sliding_windows(lengths, T, S, budget)
    scored = {}  # (stream, target index) -> tokens of context before it, in its window
    for k, start, first in windows.tolist():
        assert start + T + 1 <= lengths[k] and first == (0 if start == 0 else T - S)
        for offset in range(first, T):
            assert (k, start + offset + 1) not in scored  # once
            scored[(k, start + offset + 1)] = offset + 1
    # a plain reference: every target of every stream up to the end of its last window of S steps
    expected = []
    for k, n in enumerate(lengths):
        if n >= T + 1:
            last = (n - T - 1) // S * S
            expected += [(k, j) for j in range(1, last + T + 1)]
    if budget:
        cut = next((i + 1 for i in range(len(windows)) if sum(T - w[2] for w in windows[: i + 1]) > budget), None)
        assert cut is None or len(windows) == max(cut - 1, 1)
        expected = expected[: len(scored)]
    assert sorted(scored) == sorted(expected)
    assert all(c >= T - S or j <= T for (k, j), c in scored.items())  # past a stream's first window


def test_eval_stride_is_a_plain_sliding_window_loop(tmp_path):
    import torch
    from torch.nn import functional as F

    from conftest import invoke
    from c4mirror import make_docs, write_c4_mirror
    from minigpt.checkpoint import load_model, open_run
    from minigpt.cli import train_app
    from minigpt.evaluate import encode_texts, evaluate

    mirror = write_c4_mirror(tmp_path / "mirror", [make_docs(60, seed=51)], [make_docs(10, seed=52)])
    assert run_inprocess("--dataset", mirror, "--docs", 60, "--val-docs", 10, "--out", tmp_path / "ds").code == 0
    r = invoke(train_app, "--preset", "tiny", "--max-iters", 20, "--data", tmp_path / "ds", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    text = tmp_path / "t.txt"
    text.write_text(" ".join(d["text"] for d in make_docs(3, seed=53)), encoding="utf-8")
    saved = open_run(tmp_path / "run")
    model, T = load_model(saved, torch.device("cpu")).eval(), saved.model.block_size
    stream = torch.from_numpy(encode_texts([text], saved).astype(np.int64))
    assert evaluate(tmp_path / "run", texts=[text], stride=T, device="cpu").loss == pytest.approx(
        evaluate(tmp_path / "run", texts=[text], device="cpu").loss, rel=1e-6
    )  # windows T apart are the trainer's
    for S in (1, 5, T // 2):
        nats, n, start = 0.0, 0, 0
        with torch.no_grad():
            while start + T + 1 <= len(stream):  # each window scores the targets no earlier window did
                window = stream[start : start + T + 1]
                logits = model(window[None, :-1])[0][0]
                first = 0 if start == 0 else T - S
                nats += F.cross_entropy(logits[first:], window[1 + first :], reduction="sum").item()
                n += T - first
                start += S
        score = evaluate(tmp_path / "run", texts=[text], stride=S, batch_size=7, device="cpu")
        assert score.tokens == n and score.loss == pytest.approx(nats / n, rel=1e-5) and score.stride == S
