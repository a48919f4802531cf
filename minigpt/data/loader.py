"""The memmap loader: the token shards of a prepared dataset, batches drawn from them, and fixed
evaluation windows.

A batch is a pure function of (seed, step, micro-batch): its window starts come from a Philox
counter-based generator keyed by the seed, with (micro-batch, step) as its counter. Resuming at any
step needs no replay, evaluation draws nothing, and K processes under torchrun, each taking its own
micro-batches of the step, draw exactly the windows of one process.
Windows of block_size + 1 tokens are uniform over every start position of every shard and never
straddle two shards. One vectorised gather per shard touched; no per-row Python loop.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from .. import keys
from ..errors import UserError
from .shards import DATA_DIR, MANIFEST, SPLITS, VERSION, damage, manifest_version, read_manifest, splits_of

PREPARE_HINT = "run `minigpt-prepare` first (e.g. minigpt-prepare --docs 3000), or pass --data DIR"


def find_dataset(path: Path | None) -> tuple[Path, str | None]:
    """The dataset folder to train on, and a note when it was picked among several."""
    if path is not None:
        if read_manifest(path) is None:
            version = manifest_version(path)
            if version is not None and version != VERSION:
                raise UserError(
                    f"--data {path} is a dataset of format version {version}; this minigpt reads version {VERSION}",
                    "rebuild it with this minigpt (minigpt-prepare ... --force), or use the minigpt that made it",
                )
            what = (
                "does not exist"
                if not Path(path).exists()
                else f"is not a complete minigpt dataset (no valid {MANIFEST})"
            )
            raise UserError(f"--data {path} {what}", PREPARE_HINT)
        return Path(path), None
    found = sorted(
        (p for p in DATA_DIR.glob("*") if p.is_dir() and read_manifest(p) is not None),
        key=lambda p: ((p / MANIFEST).stat().st_mtime, p.name),
    )
    if not found:
        raise UserError(f"no dataset under {DATA_DIR.resolve()}", PREPARE_HINT)
    note = None
    if len(found) > 1:
        note = f"{len(found)} datasets under {DATA_DIR}/; using the newest, {found[-1].name} (choose with --data)"
    return found[-1], note


class TokenData:
    """The train and val shards of one dataset folder (and test's, where it has them), opened read-only
    with np.memmap."""

    def __init__(self, folder: Path, verify: bool = False):
        self.folder = Path(folder)
        manifest_bytes = (self.folder / MANIFEST).read_bytes()
        self.manifest = m = json.loads(manifest_bytes)
        self.manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
        self.dtype = np.dtype(m["dtype"]).newbyteorder("<")  # shards are little-endian whatever the machine
        problem = damage(self.folder, m, verify)
        if problem:
            raise UserError(
                problem, "the dataset is damaged: rerun minigpt-prepare with the same arguments to rebuild it"
            )
        # a plain ndarray view of each mapping: np.memmap's own indexing adds Python overhead to every gather
        self.shards: dict[str, list[np.ndarray]] = {
            split: [
                np.asarray(np.memmap(self.folder / sh["file"], dtype=self.dtype, mode="r"))
                for sh in m["splits"][split]["shards"]
            ]
            for split in splits_of(m)
        }

    def tokens(self, split: str) -> int:
        return sum(len(s) for s in self.shards[split])

    def _starts(self, split: str, T: int) -> np.ndarray:
        """How many windows of T + 1 tokens start in each shard."""
        return np.array([max(len(s) - T, 0) for s in self.shards[split]], dtype=np.int64)

    def check_block_size(self, T: int) -> None:
        for split in SPLITS:
            if self._starts(split, T).sum() == 0:
                longest = max((len(s) for s in self.shards[split]), default=0)
                raise UserError(
                    f"block_size {T} does not fit the {split} split: its longest shard has {longest:,} tokens",
                    "use a smaller --block-size, or prepare more documents (--docs / --val-docs)",
                )

    def _gather(self, split: str, shard: np.ndarray, start: np.ndarray, T: int) -> np.ndarray:
        shards, offsets = self.shards[split], np.arange(T + 1)
        if shard.size and shard.min() == shard.max():  # the common case: one shard, one gather
            return shards[shard[0]][start[:, None] + offsets].astype(np.int64)
        out = np.empty((len(start), T + 1), dtype=np.int64)
        for s in np.unique(shard):  # one fancy-index gather per shard touched
            rows = np.flatnonzero(shard == s)
            out[rows] = shards[s][start[rows, None] + offsets]
        return out

    def batch(self, seed: int, step: int, micro: int, B: int, T: int) -> np.ndarray:
        """(B, T + 1) token windows of the train split, micro-batch `micro` of optimizer step `step`:
        inputs are [:, :-1], targets [:, 1:]. Under torchrun each rank asks for its own micro-batches
        of the step (distributed.micro_batches), so the rank is part of the key through `micro`."""
        counts = self._starts("train", T)
        ends = np.cumsum(counts)
        # Philox is counter-based: (micro, step) in the high counter words give every key its own
        # stream, and the low word has room for 2**64 draws. Raw 64-bit draws modulo the number of
        # windows: the bias is below 2**-30 for any dataset that fits on a disk.
        raw = np.random.Philox(key=seed, counter=[keys.BATCHES, 0, micro, step]).random_raw(B)
        r = (raw % np.uint64(ends[-1])).astype(np.int64)
        shard = np.searchsorted(ends, r, side="right")
        return self._gather("train", shard, r - (ends[shard] - counts[shard]), T)

    def eval_windows(self, split: str, T: int, max_tokens: int, seed: int) -> np.ndarray:
        """A fixed set of (shard, start) windows: for val (and test), consecutive non-overlapping windows
        from the start of the split (all of it when max_tokens is 0); for train, that many spread at
        random by a generator of its own, so the training batches never shift it (with max_tokens 0, as
        many tokens as the whole val split has)."""
        if split != "train":
            per_shard = [
                np.stack([np.full(n, i), np.arange(n) * T], 1)
                for i, s in enumerate(self.shards[split])
                if (n := (len(s) - 1) // T) > 0
            ]
            windows = np.concatenate(per_shard) if per_shard else np.zeros((0, 2), dtype=np.int64)
        else:
            counts = self._starts(split, T)
            ends = np.cumsum(counts)
            n = int(min(ends[-1], max((max_tokens or self.tokens("val")) // T, 1)))
            rng = np.random.Generator(np.random.Philox(key=seed, counter=[keys.EVAL_WINDOWS, 0, 0, 0]))
            r = np.sort(rng.choice(ends[-1], size=n, replace=False))
            shard = np.searchsorted(ends, r, side="right")
            windows = np.stack([shard, r - (ends[shard] - counts[shard])], 1)
        if max_tokens:
            windows = windows[: max(max_tokens // T, 1)]
        return windows

    def eval_batches(self, split: str, windows: np.ndarray, B: int, T: int):
        for i in range(0, len(windows), B):
            w = windows[i : i + B]
            yield self._gather(split, w[:, 0], w[:, 1], T)


def to_device(batch: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets on the device; on CUDA through pinned memory and a non-blocking copy."""
    t = torch.from_numpy(batch)
    if device.type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
    else:
        t = t.to(device)
    return t[:, :-1], t[:, 1:]
