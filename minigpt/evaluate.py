"""minigpt-eval: a run's loss on a dataset split or on text files, in nats and bits per character and in
bits per UTF-8 byte.

The windows are minigpt-train's evaluation windows (data.TokenData.eval_windows): for val, consecutive
non-overlapping windows of block_size + 1 tokens from the start of the split, as many as --eval-tokens
allows (the run's own budget by default), so on the run's own dataset minigpt-eval prints the run's
last val_loss; for train, the run's seeded random windows; for test (a split minigpt-prepare keeps
apart where asked to, which training never reads), the same windows as val's over all of it by
default. Text files are encoded with the run's vocabulary as minigpt-prepare encodes a file (one
document, <eot> after it; characters outside the vocabulary are <unk>) and scored over consecutive
windows, all of them by default: the same figure as a dataset prepared from the same text with
--vocab RUN.

--stride S slides windows S tokens apart instead (sliding_windows): each target is scored once, with
at least block_size - S tokens of context past a stream's first window, as char-level results are
published.

Every target token is scored, <eot> and <unk> included (as the trainer scores them). Bits per byte
divide the total bits by the UTF-8 bytes of the targets: a character's own length, and one byte for an
<eot> (a document boundary) or an <unk> (a character the vocabulary lacks).
"""

from __future__ import annotations

import math
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from . import memory
from .checkpoint import SavedRun, load_model, open_run
from .kernels import onednn_layout, onednn_matmul_rule
from .data.loader import TokenData, find_dataset
from .data.shards import MANIFEST, SPLITS, TEST
from .device import resolve_device, resolve_dtype
from .errors import UserError, brief
from .graphs import GraphedForward
from .model import GPT
from .config import CPU_EVAL_BATCH
from .scoring import forward_of, scored_targets, summed_loss
from .data.textfiles import utf8_error


@dataclass
class Score:
    source: str  # what was scored, in words
    block_size: int
    windows: int
    tokens: int  # targets scored
    chars: int  # of those, characters (<unk> included)
    bytes: int
    unk: int
    eot: int
    loss: float  # mean nats per token
    batch_size: int = 0  # windows a forward pass (what fits in memory; the figure is the same whatever it is)
    stride: int | None = None  # sliding windows that many tokens apart (None: the trainer's windows)

    @property
    def bits_per_char(self) -> float:
        return self.loss / math.log(2)

    @property
    def bits_per_byte(self) -> float:
        return self.loss * self.tokens / math.log(2) / self.bytes

    def to_json(self) -> dict:
        return {**asdict(self), "bits_per_char": self.bits_per_char, "bits_per_byte": self.bits_per_byte}

    def lines(self, run: Path) -> str:
        return (
            f"run {run} on {self.source}: {self.windows:,} windows of {self.block_size}"
            + (f" sliding by {self.stride}" if self.stride else "")
            + f", {self.tokens:,} tokens scored "
            f"({self.chars:,} characters, {self.bytes:,} UTF-8 bytes, {self.unk:,} <unk>, {self.eot:,} <eot>)\n"
            f"loss {self.loss:.4f} nats/char, {self.bits_per_char:.4f} bits/char, {self.bits_per_byte:.4f} bits/byte"
        )


def evaluate(
    run: Path,
    data: Path | None = None,
    split: str = "val",
    texts: list[Path] | None = None,
    eval_tokens: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    stride: int | None = None,
) -> Score:
    saved = open_run(run)
    if split not in (*SPLITS, TEST):
        raise UserError(
            f"--split {split}: a dataset has the splits train, val and (where prepared with one) test",
            "choose --split val, test or train",
        )
    if texts and data is not None:
        raise UserError("--text and --data both name what to score", "give one of them")
    if eval_tokens is not None and eval_tokens < 0:
        raise UserError(f"--eval-tokens cannot be negative (got {eval_tokens})", "0 scores every window")
    T, dev = saved.model.block_size, resolve_device(device)
    B = batch_size or (CPU_EVAL_BATCH if dev.type == "cpu" else saved.train.get("batch_size", CPU_EVAL_BATCH))
    if B < 1:
        raise UserError(f"--batch-size must be at least 1 (got {B})", "leave it out for the default")
    dtype, _ = resolve_dtype(saved.train.get("dtype", "auto"), dev, saved.model.n_embd)
    model = _model(saved, dev)
    B = _fitting_batch(saved, B, dev, dtype, given=batch_size is not None)
    if stride is not None:
        return _score_strided(saved, model, data, split, texts, eval_tokens, B, dev, dtype, stride)
    if texts:
        stream = encode_texts(texts, saved)
        windows = np.arange(max((len(stream) - 1) // T, 0)) * T
        windows = windows[: max(eval_tokens // T, 1)] if eval_tokens else windows
        if len(windows) == 0:
            raise UserError(
                f"the text has {len(stream):,} tokens, fewer than one window of {T + 1}",
                "score a longer text (windows are the run's block_size + 1 tokens)",
            )
        batches = (
            np.stack([stream[s : s + T + 1] for s in windows[i : i + B]]).astype(np.int64)
            for i in range(0, len(windows), B)
        )
        source = ", ".join(str(t) for t in texts)
    else:
        dataset = open_dataset(data, saved, split)
        windows = dataset.eval_windows(split, T, _budget(saved, split, eval_tokens), saved.train.get("seed", 0))
        if len(windows) == 0:
            raise UserError(
                f"{dataset.folder}'s {split} split has no window of {T + 1} tokens",
                "prepare a longer split, or score it with a run of a smaller block_size",
            )
        batches = dataset.eval_batches(split, windows, B, T)
        source = f"{dataset.folder} ({split})"
    autocast = torch.autocast(dev.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    graphed = _graphed(model, autocast, (B, T + 1), dev) if dev.type == "cuda" else None
    return _score(model, batches, len(windows), dev, autocast, saved, source, graphed, B)


def sliding_windows(lengths: list[int], T: int, S: int, budget: int) -> np.ndarray:
    """(stream, start, first) rows: windows of T + 1 tokens S apart over each stream; the first of a stream
    scores its T targets, each later one its last S (offsets T - S on), so every target up to the last
    window's end is scored once, with at least T - S tokens before it past a stream's first window.
    budget > 0: the windows whose targets reach it (at least one)."""
    rows = [
        np.stack([np.full(len(starts), i), starts, np.where(starts == 0, 0, T - S)], 1)
        for i, n in enumerate(lengths)
        if len(starts := np.arange(0, n - T, S)) > 0  # a start s needs s + T + 1 <= n
    ]
    windows = np.concatenate(rows) if rows else np.zeros((0, 3), dtype=np.int64)
    if budget and len(windows):
        scored = np.cumsum(T - windows[:, 2])
        windows = windows[: max(int(np.searchsorted(scored, budget, side="right")), 1)]
    return windows


def _score_strided(saved, model, data, split, texts, eval_tokens, B, dev, dtype, S) -> Score:
    """minigpt-eval --stride S: the val split's shards, or the texts, scored by sliding windows."""
    T = saved.model.block_size
    if not 1 <= S <= T:
        raise UserError(f"--stride {S}: from 1 to the run's block_size {T}", f"e.g. --stride {max(T // 2, 1)}")
    if texts:
        streams, source = [encode_texts(texts, saved)], ", ".join(str(t) for t in texts)
        budget = eval_tokens or 0
    else:
        if split == "train":
            raise UserError(
                "--stride slides over consecutive text: the val or test split, or --text", "leave out --split train"
            )
        dataset = open_dataset(data, saved, split)
        streams, source = dataset.shards[split], f"{dataset.folder} ({split})"
        budget = _budget(saved, split, eval_tokens)
    windows = sliding_windows([len(s) for s in streams], T, S, budget)
    if len(windows) == 0:
        raise UserError(
            f"fewer than {T + 1} tokens to score", "score a longer text (windows are block_size + 1 tokens)"
        )
    vocab, counts = saved.vocab, np.zeros(len(saved.vocab), dtype=np.int64)
    autocast = torch.autocast(dev.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    forward, total = scored_targets(model, autocast, dev), torch.zeros((), device=dev)
    for i in range(0, len(windows), B):
        w = windows[i : i + B]
        batch = np.stack([streams[k][s : s + T + 1] for k, s, _ in w]).astype(np.int64)
        total += forward(batch, w[:, 2])
        targets = batch[:, 1:][np.arange(T)[None, :] >= w[:, 2:3]]
        counts += np.bincount(targets, minlength=len(vocab))
    return _figures(saved, source, len(windows), counts, total.item() / int(counts.sum()), B, S)


def _fitting_batch(saved: SavedRun, B: int, device: torch.device, dtype: torch.dtype, given: bool) -> int:
    """B windows a batch where they fit in the memory left beside the model (memory.py): the default shrinks
    to what fits (the figure is the same whatever the batch); a --batch-size that cannot fit is refused."""
    free = memory.available(device)
    if free is None:
        return B

    fits = memory.forward_batch(saved.model, dtype, B, free)
    if given:
        memory.check(
            memory.forward_need(saved.model, B, saved.model.block_size, dtype),
            free,
            device,
            f"scoring {B} windows of {saved.model.block_size} tokens at once",
            lambda: [f"--batch-size {fits}" if fits else "score on a device with more memory"],
        )
        return B
    return fits or 1


def _model(saved: SavedRun, device: torch.device) -> GPT:
    model = load_model(saved, device)
    if device.type == "cpu" and onednn_matmul_rule()[0]:  # as the trainer's evaluation computes
        onednn_layout(model)
    return model.eval()


def _graphed(model: GPT, autocast, shape: tuple[int, int], device: torch.device) -> GraphedForward | None:
    """On CUDA, the forward pass of a full batch captured once as a CUDA graph, as the trainer evaluates;
    None where capture fails (the batches then run as they are)."""
    try:
        return GraphedForward(model, autocast, shape, device)
    except Exception as e:  # noqa: BLE001 - an optional speed-up: say why and go on without it
        print(f"CUDA graph capture failed here ({brief(e)}); scoring without it", file=sys.stderr)
        return None
    finally:
        model.eval()  # GraphedForward leaves the model in training mode


def _score(
    model: GPT,
    batches,
    n_windows: int,
    device: torch.device,
    autocast,
    saved: SavedRun,
    source: str,
    graphed: GraphedForward | None = None,
    B: int = 0,
) -> Score:
    vocab = saved.vocab
    counts = np.zeros(len(vocab), dtype=np.int64)

    def count(batch: np.ndarray) -> None:
        counts[:] += np.bincount(batch[:, 1:].ravel(), minlength=len(vocab))

    total = summed_loss(forward_of(model, autocast, device, B, graphed=graphed), batches, device, count)
    return _figures(saved, source, n_windows, counts, total.item() / n_windows, B)  # windows of T targets each


def _figures(
    saved: SavedRun, source: str, n_windows: int, counts: np.ndarray, loss: float, B: int, stride=None
) -> Score:
    """The Score of the targets counted by token in `counts`, whose mean loss is `loss`."""
    vocab = saved.vocab
    nbytes = np.array(
        [len(s.encode("utf-8")) if i not in (vocab.eot, vocab.unk) else 1 for i, s in enumerate(vocab.itos)],
        dtype=np.int64,
    )
    tokens = int(counts.sum())
    return Score(
        source,
        saved.model.block_size,
        n_windows,
        tokens,
        tokens - int(counts[vocab.eot]),
        int(counts @ nbytes),
        int(counts[vocab.unk]),
        int(counts[vocab.eot]),
        loss,
        B,
        stride,
    )


def _budget(saved: SavedRun, split: str, eval_tokens: int | None) -> int:
    """Tokens to score (0: all): --eval-tokens; else the run's budget, but all of a test split (its
    figure is the final one, not the trainer's cheap estimate)."""
    if eval_tokens is not None:
        return eval_tokens
    return 0 if split == TEST else saved.train.get("eval_tokens", 0)


def open_dataset(data: Path | None, saved: SavedRun, split: str = "val") -> TokenData:
    """--data, or the dataset the run was trained on; it must share the run's vocabulary, and hold `split`."""
    if data is None:
        data = Path(saved.config.get("dataset", {}).get("folder", ""))
        if not (data / MANIFEST).is_file():
            raise UserError(
                f"the run's own dataset {data} is not there any more",
                "pass --data DIR (a dataset encoded with the run's vocabulary) or --text FILE",
            )
    folder, _ = find_dataset(data)
    dataset = TokenData(folder)
    if dataset.manifest["vocab_sha256"] != saved.vocab_sha256:
        raise UserError(
            f"{folder} was encoded with another vocabulary than {saved.path}'s",
            f"prepare it with the run's vocabulary: minigpt-prepare ... --vocab {saved.path}",
        )
    if split not in dataset.shards:
        raise UserError(
            f"{folder} has no {split} split (it was prepared without one)",
            "prepare the dataset with a test split kept apart (minigpt-prepare ... --test-split NAME, "
            "--test-data-files FILES, --test-fraction F or --test-docs M), or pass --data DIR of one that has it",
        )
    return dataset


def encode_texts(paths: list[Path], saved: SavedRun) -> np.ndarray:
    """Each file as one document, <eot> after it, in the run's vocabulary: the tokens, one stream."""
    parts = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise UserError(f"--text {path}: cannot read it ({e.strerror or e})", "check the path") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise utf8_error(data, Path(path), 0) from None
        tokens, _ = saved.vocab.encode_docs(pa.array([text], pa.string()))
        parts.append(tokens)
    return np.concatenate(parts)
