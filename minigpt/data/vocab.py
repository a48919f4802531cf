"""The character vocabulary: counting characters, freezing the vocabulary, encoding documents.

A token is one Unicode code point, plus two special tokens: <eot> after every document and <unk> for
every character outside the vocabulary (counted, never dropped). All the work is numpy over the UTF-8
bytes of Arrow string arrays: ASCII bytes are already code points, and the few multi-byte characters of
web text are decoded vectorised. There is no per-character Python loop.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError

if TYPE_CHECKING:  # Arrow arrays come from the data stage; the trainer and the sampler never load pyarrow
    import pyarrow as pa

EOT, UNK = "<eot>", "<unk>"
VOCAB_FILE, VOCAB_FORMAT = "vocab.json", "minigpt-vocab"
EOT_ID, UNK_ID = 0, 1  # the special tokens come first, then the characters by code point
MAX_UINT16_VOCAB = 65_536
_CHUNK = 1 << 18  # numpy gathers and histograms run far faster on cache-sized pieces (tests: a few bytes)


def _offsets(arr: pa.Array) -> np.ndarray:
    return np.frombuffer(arr.buffers()[1], np.int32, count=len(arr) + 1, offset=arr.offset * 4)


def utf8_bytes(arr: pa.Array) -> np.ndarray:
    """The UTF-8 bytes of a string array's values, concatenated, without a copy."""
    offsets, data = _offsets(arr), arr.buffers()[2]
    if data is None or offsets[-1] == offsets[0]:
        return np.zeros(0, np.uint8)
    return np.frombuffer(data, np.uint8)[offsets[0] : offsets[-1]]


def _multibyte(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(byte position, byte length, code point) of every non-ASCII character in valid UTF-8 bytes `b`."""
    lead = np.flatnonzero(b >= 0xC0)  # continuation bytes are 0x80..0xBF, so these are the lead bytes
    b0 = b[lead].astype(np.uint32)
    n = 2 + (b0 >= 0xE0) + (b0 >= 0xF0)
    last = len(b) - 1
    b1, b2, b3 = (b[np.minimum(lead + k, last)].astype(np.uint32) & 0x3F for k in (1, 2, 3))
    cp = np.where(
        n == 2,
        (b0 & 0x1F) << 6 | b1,
        np.where(n == 3, (b0 & 0x0F) << 12 | b1 << 6 | b2, (b0 & 0x07) << 18 | b1 << 12 | b2 << 6 | b3),
    )
    return lead, n, cp


def char_lengths(arr: pa.Array) -> np.ndarray:
    import pyarrow.compute as pc

    return pc.utf8_length(arr).to_numpy(zero_copy_only=False)


class CharCounter:
    """Character counts of a split, accumulated batch by batch (memory does not grow with N)."""

    def __init__(self):
        self.ascii = np.zeros(128, np.int64)
        self.other: dict[int, int] = {}

    def update(self, b: np.ndarray) -> None:
        for i in range(0, b.size, _CHUNK):
            self.ascii += np.bincount(b[i : i + _CHUNK], minlength=256)[:128]  # bytes < 0x80 are ASCII chars
        if b.size and b.max() >= 0x80:
            values, counts = np.unique(_multibyte(b)[2], return_counts=True)
            for v, c in zip(values.tolist(), counts.tolist()):
                self.other[v] = self.other.get(v, 0) + c

    def counts(self) -> dict[int, int]:
        d = {cp: int(c) for cp, c in enumerate(self.ascii.tolist()) if c}
        d.update(self.other)
        return d


def auto_min_count(train_chars: int, web: bool = True) -> int:
    """The default --min-count: one occurrence per million train characters, at least 10 for web text
    (a hub dataset) and at least 1 for the user's own files.

    Web English has ~100 ASCII characters plus a few dozen common non-ASCII ones (curly quotes, dashes,
    accented letters) above that rate; the long tail of rare scripts and symbols falls below it, so an
    ordinary C4 slice of any size fits uint8 tokens, and the rare characters become <unk>. A text of
    one's own (a play, a codebase) is taken at its word: every character of a small one is kept, as
    nanoGPT's char-level prepare keeps them.
    """
    return max(10 if web else 1, math.ceil(train_chars / 1_000_000))


@dataclass
class Vocab:
    itos: list[str]
    counts: dict[str, int] = field(default_factory=dict)  # every train character, kept or not
    min_count: int = 1
    max_vocab: int | None = None
    eot: int = EOT_ID
    unk: int = UNK_ID

    @classmethod
    def build(cls, counts: dict[int, int], min_count: int, max_vocab: int | None) -> "Vocab":
        kept = [cp for cp, c in counts.items() if c >= min_count]
        if max_vocab is not None:  # the most frequent, ties broken by code point
            kept = sorted(kept, key=lambda cp: (-counts[cp], cp))[: max_vocab - 2]
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        vocab = cls(
            [EOT, UNK] + [chr(cp) for cp in sorted(kept)], {chr(cp): c for cp, c in ordered}, min_count, max_vocab
        )
        if len(vocab) > MAX_UINT16_VOCAB:
            raise UserError(
                f"the vocabulary would have {len(vocab):,} entries; uint16 token shards hold at most "
                f"{MAX_UINT16_VOCAB:,}",
                f"raise --min-count (now {min_count}) or set --max-vocab {MAX_UINT16_VOCAB}",
            )
        return vocab

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if len(self) <= 256 else np.uint16)

    def to_json(self) -> bytes:
        d = {
            "format": VOCAB_FORMAT,
            "version": 1,
            "size": len(self),
            "eot": self.eot,
            "unk": self.unk,
            "min_count": self.min_count,
            "max_vocab": self.max_vocab,
            "itos": self.itos,
            "counts": self.counts,
        }
        return (json.dumps(d, ensure_ascii=False, indent=1) + "\n").encode("utf-8")

    def sha256(self) -> str:
        return hashlib.sha256(self.to_json()).hexdigest()

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(d["itos"], d.get("counts", {}), d.get("min_count", 1), d.get("max_vocab"), d["eot"], d["unk"])

    @property
    def lut(self) -> np.ndarray:
        """Code point -> token id, <unk> for everything outside the vocabulary."""
        if not hasattr(self, "_lut"):
            lut = np.full(0x110000, self.unk, self.dtype)
            for i, s in enumerate(self.itos):
                if i not in (self.eot, self.unk):
                    lut[ord(s)] = i
            self._lut = lut
        return self._lut

    def encode_docs(self, arr: pa.Array) -> tuple[np.ndarray, int]:
        """Token ids of a batch of documents, <eot> after each; and how many were <unk>.

        Works on the UTF-8 bytes: every byte goes through the first 256 entries of the table (right for
        ASCII), the few multi-byte characters are decoded and patched in at their lead byte, and the
        continuation bytes are dropped. No array of code points for the whole batch is ever made.
        """
        b = utf8_bytes(arr)
        offsets = _offsets(arr)
        ends = (offsets[1:] - offsets[0]).astype(np.int64)  # where each document ends, in bytes for now
        tokens = np.empty(b.size, self.dtype)
        byte_table = self.lut[:256]
        for i in range(0, b.size, _CHUNK):
            np.take(byte_table, b[i : i + _CHUNK], out=tokens[i : i + _CHUNK])
        if b.size and b.max() >= 0x80:
            lead, n, cp = _multibyte(b)
            tokens[lead] = self.lut[cp]
            tokens = tokens[(b & 0xC0) != 0x80]
            # a document's end moves back by the continuation bytes of the characters that start before it
            dropped = np.concatenate(([0], np.cumsum(n - 1)))
            ends -= dropped[np.searchsorted(lead, ends)]
        unk = int(np.count_nonzero(tokens == self.unk))
        return np.insert(tokens, ends, self.dtype.type(self.eot)), unk

    def check(self) -> None:
        """A well-formed vocabulary: the special tokens in place, then distinct single characters."""
        specials = {self.eot: EOT, self.unk: UNK}
        if not all(isinstance(i, int) and 0 <= i < len(self) and self.itos[i] == s for i, s in specials.items()):
            raise ValueError(f"the special tokens are not at their ids (eot {self.eot}, unk {self.unk})")
        chars = [s for i, s in enumerate(self.itos) if i not in specials]
        if not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise ValueError("an entry is not a single character")
        if len(set(chars)) != len(chars) or len(self) > MAX_UINT16_VOCAB:
            raise ValueError("repeated characters, or more entries than uint16 tokens hold")

    def encode(self, text: str) -> list[int]:
        lut = self.lut
        return [int(lut[ord(c)]) for c in text]

    def outside(self, text: str) -> list[str]:
        """The characters of text that are not in the vocabulary (they would become <unk>), sorted."""
        known = set(self.itos[2:])
        return sorted({c for c in text if c not in known})

    @staticmethod
    def listed(chars: list[str], most: int = 20) -> str:
        """Characters as an error message names them: quoted, the first `most`."""
        return ", ".join(repr(c) for c in chars[:most]) + (" ..." if len(chars) > most else "")

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)


def read_vocab(path: str | Path) -> tuple[Path, Vocab, bytes]:
    """--vocab: a vocab.json, or a dataset or run folder that holds one; (its path, the vocabulary, the
    file's bytes), or a UserError that says what is wrong with it."""
    path = Path(path).expanduser().absolute()
    hint = (
        "--vocab takes the vocab.json that minigpt-prepare wrote into a dataset folder (and minigpt-train "
        "copied into its run folder), or either folder"
    )
    if path.is_dir():
        path = path / VOCAB_FILE
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"--vocab {path}: cannot read it ({e.strerror or e})", hint) from None
    try:
        d = json.loads(data.decode("utf-8"))
        if not isinstance(d, dict) or d.get("format") != VOCAB_FORMAT or d.get("version") != 1:
            raise ValueError(
                f"its format is {d.get('format') if isinstance(d, dict) else type(d).__name__!r}, "
                f"not {VOCAB_FORMAT!r} version 1"
            )
        vocab = Vocab(
            list(d["itos"]), d.get("counts", {}), d.get("min_count", 1), d.get("max_vocab"), d["eot"], d["unk"]
        )
        vocab.check()
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"--vocab {path} is not a minigpt vocabulary: {e}", hint) from None
    return path, vocab, data
