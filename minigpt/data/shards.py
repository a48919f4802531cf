"""Token shards and the manifest that marks a dataset complete.

A shard is a flat little-endian array of token ids with no header, so `np.memmap(path, dtype, mode="r")`
opens it as it is: uint8 when the vocabulary has at most 256 entries, else uint16. `manifest.json`
lists every shard with its token count and sha256, and is written last: a folder without it is not a
dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..files import sha256_file
from .vocab import VOCAB_FILE

DATA_DIR = Path("data")  # where minigpt-prepare writes datasets and minigpt-train looks for them
MANIFEST = "manifest.json"
SPLITS = ("train", "val")  # every dataset has them
TEST = "test"  # a third split, kept apart from both, where minigpt-prepare was asked for one
FORMAT = "minigpt-dataset"
REQUIRED = {"dtype", "vocab_size", "vocab_sha256", "eot", "unk", "source", "source_files", "build", "splits"}
SPLIT_KEYS = {"docs", "chars", "bytes", "tokens", "unk", "shards"}
VERSION = 1


class ShardWriter:
    """Appends token arrays to `{split}_00000.bin`, `{split}_00001.bin`, ... of `shard_tokens` each at most."""

    def __init__(self, folder: Path, split: str, dtype: np.dtype, shard_tokens: int):
        self.folder, self.split, self.shard_tokens = Path(folder), split, shard_tokens
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.shards: list[dict] = []
        self._file = None

    def _open(self) -> None:
        name = f"{self.split}_{len(self.shards):05d}.bin"
        self._file, self._hash = open(self.folder / name, "wb"), hashlib.sha256()
        self.shards.append({"file": name, "tokens": 0, "sha256": None})

    def _finish(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())  # on disk before the manifest that vouches for it
        self._file.close()
        self.shards[-1]["sha256"] = self._hash.hexdigest()
        self._file = None

    def write(self, tokens: np.ndarray) -> None:
        tokens = np.ascontiguousarray(tokens, dtype=self.dtype)
        while tokens.size:
            if self._file is None:
                self._open()
            room = self.shard_tokens - self.shards[-1]["tokens"]
            part, tokens = tokens[:room], tokens[room:]
            self._file.write(part.data)
            self._hash.update(part.data)
            self.shards[-1]["tokens"] += int(part.size)
            if self.shards[-1]["tokens"] == self.shard_tokens:
                self._finish()

    def close(self) -> list[dict]:
        if self._file is not None:
            self._finish()
        return self.shards

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()


def splits_of(manifest: dict) -> tuple[str, ...]:
    """The splits a dataset holds: train, val, and test where it has one."""
    return SPLITS + ((TEST,) if TEST in manifest["splits"] else ())


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a complete dataset folder, or None when there is none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not REQUIRED <= manifest.keys():
        return None
    if manifest.get("version") != VERSION:  # another format version: read by the minigpt that wrote it
        return None
    try:
        if all(SPLIT_KEYS <= manifest["splits"][s].keys() for s in splits_of(manifest)):
            return manifest
    except (KeyError, TypeError, AttributeError):
        pass
    return None


def manifest_version(folder: Path) -> int | None:
    """The format version a folder's manifest.json declares, whether or not this minigpt reads it."""
    try:
        return json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError, AttributeError):
        return None


def damage(folder: Path, manifest: dict, verify: bool = False) -> str | None:
    """What is wrong with a dataset folder's files against its manifest, or None: vocab.json's hash, each
    shard's size (its tokens times the item size), and with verify each shard's sha256."""
    folder, itemsize = Path(folder), np.dtype(manifest["dtype"]).itemsize
    vocab = folder / VOCAB_FILE
    if not vocab.is_file() or sha256_file(vocab) != manifest["vocab_sha256"]:
        return f"{vocab} is missing or does not match the manifest's vocab_sha256"
    for split in splits_of(manifest):
        for sh in manifest["splits"][split]["shards"]:
            path = folder / sh["file"]
            size = path.stat().st_size if path.is_file() else None
            if size != sh["tokens"] * itemsize:
                return (
                    f"shard {path} is {'missing' if size is None else f'{size:,} bytes'}; the manifest says "
                    f"{sh['tokens'] * itemsize:,}"
                )
            if verify and sha256_file(path) != sh["sha256"]:
                return f"shard {path} does not match its sha256 in the manifest"
    return None
