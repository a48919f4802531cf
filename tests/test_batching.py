"""Batched decoding (batched.py) and continuous batching (scheduler.py), in-process: every row of a
batch is what the single stream computes, bit for bit, and every job's text is minigpt-sample's."""

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.batched import BatchedDecode
from minigpt.decode import CPUDecode
from minigpt.engine import Engine, SamplingParams, draw, pick
from minigpt.kernels import cpu_decode_layout
from minigpt.model import GPT, GPTConfig
from minigpt.scheduler import Job, Scheduler, StopText
from minigpt.data.vocab import Vocab

CPU = torch.device("cpu")
SHAPES = {
    "default": {},  # RoPE, QK-norm, ReLU², no biases
    "gpt2": dict(pos="learned", qk_norm=False, mlp="gelu", bias=True),
}
_models: dict = {}


def model_of(shape: str) -> GPT:
    """A small model of each shape, made once (block 16: the window fills within a test)."""
    if shape not in _models:
        torch.manual_seed(0)
        cfg = GPTConfig(vocab_size=30, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0, **SHAPES[shape])
        _models[shape] = cpu_decode_layout(GPT(cfg).eval())
    return _models[shape]


@settings(deadline=None)
@given(
    shape=st.sampled_from(sorted(SHAPES)),
    slots=st.integers(1, 64),
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(1, 12),
)
def test_a_batched_step_gives_every_row_the_single_streams_logits_bit_for_bit(shape, slots, seed, steps):
    model, rng = model_of(shape), random.Random(seed)
    T = model.config.block_size
    batched, solo = BatchedDecode(model, CPU, slots), {}
    with torch.inference_mode():
        for s in range(slots):  # prompts of every length, so the rows sit at different positions
            tokens = [rng.randrange(30) for _ in range(rng.randint(1, T - 1))]
            solo[s] = CPUDecode(model, CPU)
            assert torch.equal(batched.prefill(s, tokens), solo[s].prefill(tokens))
        for _ in range(steps):  # any subset of the slots, in any order, steps together
            rows = [s for s in rng.sample(range(slots), rng.randint(1, slots)) if batched.pos[s] < T]
            if not rows:
                break
            tokens = [rng.randrange(30) for _ in rows]
            logits = batched.step(rows, tokens)
            for i, (s, t) in enumerate(zip(rows, tokens)):
                assert torch.equal(logits[i : i + 1], solo[s](t)), (s, batched.pos[s])
                assert batched.pos[s] == solo[s].cache.pos


def test_draw_is_torch_multinomial_row_by_row():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(8, 50, generator=g) * 3, dim=-1)
    ours = [torch.Generator().manual_seed(i) for i in range(8)]
    theirs = [torch.Generator().manual_seed(i) for i in range(8)]
    for _ in range(30):
        expected = [int(torch.multinomial(probs[i : i + 1], 1, generator=theirs[i])) for i in range(8)]
        assert draw(probs, ours) == expected


@given(
    pieces=st.lists(st.sampled_from(["a", "b", "c", "ab", "\n<eot>\n", "\ufffd"]), max_size=30),
    stops=st.lists(st.text(alphabet="abc<>\n", min_size=1, max_size=4), max_size=4),
)
def test_stop_text_sends_the_text_up_to_the_first_stop_string_completed(pieces, stops):
    def reference(text: str) -> tuple[str, bool]:  # a character at a time: the first prefix holding a stop
        for end in range(1, len(text) + 1):
            found = [i for i in (text[:end].find(s) for s in stops) if i >= 0]
            if found:
                return text[: min(found)], True
        return text, False

    filt, sent, stopped = StopText(tuple(stops)), [], False
    for piece in pieces:
        out, stopped = filt.feed(piece)
        sent.append(out)
        if stopped:
            break
    if not stopped:
        sent.append(filt.flush())
    assert ("".join(sent), stopped) == reference("".join(pieces))


# ---- the scheduler against Engine.samples ----

VOCAB = Vocab(["<eot>", "<unk>"] + list("abcdefghijklmnopqrstuvwxyz .,"))
SETTINGS = [
    SamplingParams(0.0),
    SamplingParams(0.8),
    SamplingParams(1.0, top_k=5),
    SamplingParams(0.7, top_p=0.9),
    SamplingParams(1.2, top_k=8, top_p=0.8),
]


def engine_of(shape: str) -> Engine:
    return Engine(model_of(shape), VOCAB, CPU)


def solo(engine: Engine, job: Job) -> list[str]:
    """What minigpt-sample prints for the job, sample by sample (Engine.samples), cut at its stop strings."""
    out = []
    for pieces in engine.samples(job.ids, job.n, job.max_new_tokens, job.params, job.seed, job.stop_at_eot):
        filt, text = StopText(job.stop), ""
        for piece in pieces:
            got, stopped = filt.feed(piece)
            text += got
            if stopped:
                break
        out.append(text + filt.flush())
    return out


def run_jobs(engine: Engine, slots: int, jobs: list[Job], arrivals: list[int]) -> None:
    """Jobs joining the scheduler at the given steps, run until all are done."""
    scheduler, step = Scheduler(engine, slots), 0
    pending = sorted(zip(arrivals, range(len(jobs))))
    while pending or not scheduler.idle:
        while pending and pending[0][0] <= step:
            scheduler.add(jobs[pending.pop(0)[1]])
        scheduler.run_once()
        step += 1


def make_job(rng: random.Random, texts: dict, i: int) -> Job:
    prompt = "".join(rng.choice("abc de.") for _ in range(rng.randint(0, 20)))
    stop = tuple(rng.choice(["a", "e ", "xyz", "."]) for _ in range(rng.randint(0, 2)))
    events = texts.setdefault(i, [])
    return Job(
        [VOCAB.eot] + VOCAB.encode(prompt),
        rng.randint(1, 40),  # past the window (16): refills, each alone
        rng.choice(SETTINGS),
        rng.randrange(1000),
        events.append,
        n=rng.randint(1, 3),
        stop_at_eot=rng.random() < 0.3,
        stop=stop,
    )


def texts_of(events: list, n: int) -> list[str]:
    assert events[-1] == ("done",) and sum(e[0] == "end" for e in events) == n
    return ["".join(e[2] for e in events if e[0] == "text" and e[1] == i) for i in range(n)]


@settings(deadline=None, max_examples=15)
@given(shape=st.sampled_from(sorted(SHAPES)), slots=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_every_job_gets_minigpt_samples_text_whatever_runs_beside_it(shape, slots, seed):
    engine, rng, texts = engine_of(shape), random.Random(seed), {}
    jobs = [make_job(rng, texts, i) for i in range(rng.randint(1, 12))]  # more jobs than slots: some wait
    run_jobs(engine, slots, jobs, [rng.randint(0, 30) for _ in jobs])
    for i, job in enumerate(jobs):
        assert texts_of(texts[i], job.n) == solo(engine, job), i


def test_sixty_four_jobs_at_once_each_get_their_solo_text():
    engine, rng, texts = engine_of("default"), random.Random(1), {}
    jobs = [make_job(rng, texts, i) for i in range(64)]
    run_jobs(engine, 64, jobs, [0] * 64)
    assert all(texts_of(texts[i], job.n) == solo(engine, job) for i, job in enumerate(jobs))


def test_finish_reasons_and_token_counts():
    engine, texts = engine_of("default"), {}
    ids = [VOCAB.eot] + VOCAB.encode("abc")
    free = solo(engine, Job(ids, 30, SamplingParams(0.0), 0, print))[0]
    stop = free[10:12]  # a stop string that the greedy text meets
    jobs = [
        Job(ids, 30, SamplingParams(0.0), 0, texts.setdefault(0, []).append),
        Job(ids, 30, SamplingParams(0.0), 0, texts.setdefault(1, []).append, stop=(stop,)),
    ]
    run_jobs(engine, 2, jobs, [0, 0])
    ends = [[e for e in texts[i] if e[0] == "end"] for i in range(2)]
    assert ends[0] == [("end", 0, "length", 30)]
    cut = free.index(stop)
    assert ends[1][0][2] == "stop" and texts_of(texts[1], 1) == [free[:cut]]


def test_a_cancelled_job_leaves_and_frees_its_slot():
    engine, texts = engine_of("default"), {}
    ids = [VOCAB.eot]
    scheduler = Scheduler(engine, 1)
    long = Job(ids, 10_000, SamplingParams(0.8), 0, texts.setdefault(0, []).append)
    after = Job(ids, 20, SamplingParams(0.8), 1, texts.setdefault(1, []).append)
    scheduler.add(long)
    scheduler.add(after)
    for _ in range(5):
        scheduler.run_once()
    assert len(texts[0]) == 5 and not texts[1]  # the one slot is the long job's; the other waits
    long.cancelled = True
    while not scheduler.idle:
        scheduler.run_once()
    assert len(texts[0]) == 5 and texts_of(texts[1], 1) == solo(engine, after)


def test_a_failing_step_ends_its_jobs_with_an_error_and_the_scheduler_goes_on(monkeypatch):
    engine, texts = engine_of("default"), {}
    scheduler = Scheduler(engine, 2)
    job = Job([VOCAB.eot], 20, SamplingParams(0.8), 0, texts.setdefault(0, []).append)
    scheduler.add(job)

    def broken(slots, tokens):
        raise RuntimeError("out of memory")

    with monkeypatch.context() as m:
        m.setattr(scheduler.decode, "step", broken)
        scheduler.run_once()
    assert texts[0][-1] == ("error", "decoding failed (RuntimeError: out of memory)") and scheduler.idle
    again = Job([VOCAB.eot], 20, SamplingParams(0.8), 0, texts.setdefault(1, []).append)
    scheduler.add(again)
    while not scheduler.idle:
        scheduler.run_once()
    assert texts_of(texts[1], 1) == solo(engine, again)


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_pick_of_one_row_is_pick_within_many(temperature):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 40, generator=g)
    params = SamplingParams(temperature, top_k=10)
    many = pick(logits, params, [torch.Generator().manual_seed(i) for i in range(6)])
    one = [pick(logits[i : i + 1], params, [torch.Generator().manual_seed(i)])[0] for i in range(6)]
    assert many == one
