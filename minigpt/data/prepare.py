"""minigpt-prepare: stream a fixed slice of a source once (C4 by default, a hub dataset, the user's own
files), freeze it with its vocabulary, write token shards.

A dataset folder holds:
  raw/train.parquet, raw/val.parquet   the slice, verbatim (text, url, timestamp), in row groups
  raw/test.parquet                     where a test split was asked for
  vocab.json                           the frozen character vocabulary (built from train, or --vocab's)
  train_00000.bin ..., val_00000.bin   token shards: flat uint8/uint16 arrays, no header (test_00000.bin ...)
  manifest.json                        written last; without it a folder is not a dataset
Everything is built in a hidden temporary folder beside the target and renamed into place when
complete. A rerun that only changes --min-count, --max-vocab or --shard-tokens rebuilds from raw/
without touching the network; the same command on a complete dataset does nothing.
"""

from __future__ import annotations

import errno
import glob
import os
import queue
import shutil
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
import hashlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import __version__, signals
from ..errors import UserError
from ..files import folder_lock, fsync_path, write_atomic, write_json_atomic
from ..progress import Progress
from .shards import DATA_DIR, FORMAT, MANIFEST, VERSION, ShardWriter, damage, read_manifest, splits_of
from .source import Source
from .stream import BATCH_DOCS, SCHEMA, Slice
from .vocab import VOCAB_FILE, CharCounter, Vocab, auto_min_count, char_lengths, read_vocab, utf8_bytes

DEFAULT_SHARD_TOKENS = 100_000_000  # 100 MB uint8 shards: few files, each still quick to hash
ROW_GROUP_BYTES = 16 << 20  # raw parquet row groups of ~16 MB of text: reads stay batchable, RAM flat (tests: bytes)


@dataclass(frozen=True)
class BuildOptions:
    """What the vocabulary and shards are built with; changing these reuses the frozen raw/ slice."""

    min_count: int | None = None  # None: auto_min_count(train characters, web or own text)
    max_vocab: int | None = None
    shard_tokens: int = DEFAULT_SHARD_TOKENS
    vocab: str | None = None  # a frozen vocab.json to encode with, instead of building one
    vocab_sha256: str | None = None  # its hash, filled in by resolved(): a changed file rebuilds

    def resolved(self) -> "BuildOptions":
        """Checked, with --vocab's file found and hashed."""
        self.check()
        if self.vocab is None:
            return self
        path, _, data = read_vocab(self.vocab)
        return replace(self, vocab=str(path), vocab_sha256=hashlib.sha256(data).hexdigest())

    def check(self) -> None:
        if self.vocab is not None and (self.min_count is not None or self.max_vocab is not None):
            raise UserError(
                "--vocab and --min-count/--max-vocab both decide the vocabulary",
                "give --vocab to encode with a frozen one, or --min-count/--max-vocab to build one",
            )
        if self.min_count is not None and self.min_count < 1:
            raise UserError(f"--min-count must be at least 1 (got {self.min_count})", "leave it out for the default")
        if self.max_vocab is not None and self.max_vocab < 3:
            raise UserError(
                f"--max-vocab must be at least 3 (got {self.max_vocab})",
                "the vocabulary holds <eot>, <unk> and at least one character; 256 keeps uint8 shards",
            )
        if self.shard_tokens < 1:
            raise UserError(
                f"--shard-tokens must be at least 1 (got {self.shard_tokens})", "leave it out for the default"
            )


@dataclass
class SplitStats:
    docs: int = 0
    chars: int = 0
    bytes: int = 0  # UTF-8 bytes of text
    tokens: int = 0
    unk: int = 0
    shards: list = field(default_factory=list)
    open_end: bool = False  # the last document goes on in the next split (a fraction's cut fell inside it): no <eot>


@dataclass
class Result:
    out: Path
    manifest: dict
    action: str  # "built", "rebuilt", "unchanged"
    seconds: float = 0.0


def prepare(
    source: Source, build: BuildOptions, out: Path | None = None, force: bool = False, progress: Progress | None = None
) -> Result:
    build = build.resolved()
    progress = progress or Progress()
    out = Path(os.path.abspath(out if out is not None else DATA_DIR / source.default_name()))  # `.` gets a name
    start = time.perf_counter()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder", "choose another --out")
    if out == out.parent:
        raise UserError(f"--out {out} is the root of the file system", "choose a folder for the dataset")
    with folder_lock(out, "minigpt-prepare"):  # one writer: what is beside `out` and not ours is stale
        signals.keep(f"{out} is as it was; what this run had written is removed by the next minigpt-prepare there")
        return _prepare(source, build, out, force, progress, start)


def _prepare(source: Source, build: BuildOptions, out: Path, force: bool, progress: Progress, start: float) -> Result:
    _clean_stale(out)
    existing = read_manifest(out)
    if existing is None and (out / MANIFEST).exists() and not force:
        raise UserError(
            f"{out / MANIFEST} is not a manifest this version can read (damaged, or another format)",
            "add --force to rebuild the dataset there, or choose another --out",
        )
    rebuild = False
    if existing is not None and not force:
        if changed := Source.differences(existing["source"], source.to_json()):
            raise UserError(
                f"{out} holds a dataset made with other arguments: {_diff(existing['source'], source.to_json(), changed)}",
                "add --force to replace it (the slice is streamed again), or choose another --out",
            )
        if {**asdict(BuildOptions()), **existing["build"]} == asdict(build) and _intact(out, existing):
            return Result(out, existing, "unchanged", time.perf_counter() - start)
        rebuild = _raw_intact(out, existing)
        if not rebuild:
            raise UserError(
                f"{out} is damaged: its raw/ slice is missing or incomplete", "add --force to stream it again"
            )
    elif out.is_dir() and existing is None and not (out / MANIFEST).exists() and any(out.iterdir()):
        raise UserError(
            f"{out} exists and is not a minigpt dataset (it has no {MANIFEST})",
            "choose another --out, or remove that folder yourself",
        )

    # Expanded once here: a glob matching nothing fails before anything is written.
    files = existing["source_files"] if rebuild else _source_files(source)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        (tmp / "raw").mkdir(parents=True)
        if rebuild:
            for s in splits_of(existing):
                _link_or_copy(out / "raw" / f"{s}.parquet", tmp / "raw" / f"{s}.parquet")
            stats = {
                s: SplitStats(
                    **{k: existing["splits"][s].get(k, False) for k in ("docs", "chars", "bytes", "open_end")}
                )
                for s in splits_of(existing)
            }
            counter = _count_raw(tmp / "raw" / "train.parquet")
            origin = {k: existing.get(k) for k in ORIGIN}
        else:
            counter, stats, origin = _stream(source, tmp / "raw", progress)
        manifest = _build(tmp, source, files, build, counter.counts(), stats, origin, progress)
        _swap(tmp, out)
    except OSError as e:
        if isinstance(e, ConnectionError) or e.errno is None:
            raise
        where = str(e.filename or "")
        if where.startswith((str(tmp), str(out))) or e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            full = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            need = " (a dataset takes about twice its text on disk: raw/ and the shards)" if full else ""
            raise UserError(
                f"cannot write the dataset under {out.parent}: {e.strerror or e} ({where or out}){need}",
                "free space or fix the permissions there, or choose another --out; nothing was kept",
            ) from None
        raise UserError(f"cannot read {where}: {e.strerror or e}", "check the path and its permissions") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Result(out, manifest, "rebuilt" if rebuild else "built", time.perf_counter() - start)


ORIGIN = ("val_from", "val_fraction", "test_from", "test_fraction", "source_commit")  # how the slice was made


def _source_files(source: Source) -> dict[str, list[str] | None]:
    """The local files of each split, expanded; a test split must share none with train or validation."""
    files = {s: source.files(s) for s in source.splits()}
    for split in ("train", "val"):
        if shared := sorted(set(files.get("test") or ()) & set(files[split] or ())):
            raise UserError(
                f"--test-data-files and --{'' if split == 'train' else 'val-'}data-files share {len(shared)} "
                f"file(s), e.g. {shared[0]}",
                "a test split is kept apart: give it files of its own",
            )
    return files


def _stream(source: Source, raw: Path, progress: Progress) -> tuple[CharCounter, dict[str, SplitStats], dict]:
    """The one pass over the source: raw/*.parquet written, train characters counted on the way; and
    where validation and test came from, and the hub commit streamed."""
    plan = Slice(source)
    counter = CharCounter()
    stats = {
        "train": _write_raw(plan.train(), raw / "train.parquet", "streaming train", source.docs, progress, counter)
    }
    for split, tables, total in (("val", plan.val(), source.val_docs), ("test", plan.test(), source.test_docs)):
        if tables is not None:  # consumed in turn: test's documents may follow validation's in one pass
            stats[split] = _write_raw(tables, raw / f"{split}.parquet", f"streaming {split}", total, progress)
    cuts = [
        (s, f)
        for s, how, f in (("val", plan.val_from, plan.val_fraction), ("test", plan.test_from, source.test_fraction))
        if how == "fraction"
    ]
    if cuts:  # validation and/or test are the end of the slice by characters
        stats.update(_cut(raw, cuts, stats["train"].chars))
        counter = _count_raw(raw / "train.parquet")
    stats = {s: stats[s] for s in ("train", "val", "test") if s in stats}
    origin = {
        "val_from": plan.val_from,
        "val_fraction": plan.val_fraction,
        "test_from": plan.test_from,
        "test_fraction": source.test_fraction,
        "source_commit": plan.commit,
    }
    return counter, stats, origin


def _raw_writer(path: Path) -> pq.ParquetWriter:
    return pq.ParquetWriter(path, SCHEMA, compression="lz4", use_dictionary=False, write_statistics=False)


def _write_raw(
    tables: Iterator[pa.Table],
    path: Path,
    what: str,
    total: int | None,
    progress: Progress,
    counter: CharCounter | None = None,
) -> SplitStats:
    """Documents into a raw parquet file in row groups of ~ROW_GROUP_BYTES of text; their stats."""
    st, pending, pending_bytes = SplitStats(), [], 0
    with _raw_writer(path) as writer, progress.docs(what, total) as update:
        for table in _prefetch(tables):
            nbytes = _add(st, table, counter)
            pending.append(table)
            pending_bytes += nbytes
            if pending_bytes >= ROW_GROUP_BYTES:
                writer.write_table(pa.concat_tables(pending), row_group_size=1 << 30)
                pending, pending_bytes = [], 0
            update(len(table), nbytes)
        if pending:
            writer.write_table(pa.concat_tables(pending), row_group_size=1 << 30)
    fsync_path(path)  # on disk before the manifest that vouches for it
    return st


def _add(st: SplitStats, table: pa.Table, counter: CharCounter | None = None) -> int:
    """Count a table's documents, characters and bytes into st (and its characters into counter)."""
    nbytes = 0
    for chunk in table.column("text").chunks:
        b = utf8_bytes(chunk)
        nbytes += b.size
        st.chars += int(char_lengths(chunk).sum())
        if counter is not None:
            counter.update(b)
    st.docs += len(table)
    st.bytes += nbytes
    return nbytes


def _cut(raw: Path, cuts: list[tuple[str, float]], n: int) -> dict[str, SplitStats]:
    """Validation and/or test as the last fractions of the slice's n characters, nanoGPT's cut: with
    --val-fraction F alone train keeps the first int(n * (1 - F)); test, where cut too, is the very end.
    raw/train.parquet (the whole slice) is split there a row group at a time; a document that straddles
    a cut is cut in two, and its first part ends its split without <eot> (open_end): it goes on in the next."""
    names = ["train"] + [s for s, _ in cuts]
    bounds = [0] + [int(n * (1 - sum(f for _, f in cuts[i:]))) for i in range(len(cuts))] + [n]
    if any(a >= b for a, b in zip(bounds, bounds[1:])):
        what = " and ".join(f"{f:g} for {'validation' if s == 'val' else 'test'}" for s, f in cuts)
        raise UserError(
            f"the slice has {n:,} characters, too few to cut {what} off it",
            "give more text, or held-out text of its own with --val-data-files / --test-data-files",
        )
    whole = raw / "whole.parquet"
    os.replace(raw / "train.parquet", whole)
    stats, seen = {s: SplitStats() for s in names}, 0  # seen: characters before this row group
    with ExitStack() as stack:
        writers = {s: stack.enter_context(_raw_writer(raw / f"{s}.parquet")) for s in names}
        pf = pq.ParquetFile(whole)
        for group in range(pf.num_row_groups):
            table = pf.read_row_group(group)
            lengths = pc.utf8_length(table.column("text")).to_numpy(zero_copy_only=False).astype(np.int64)
            ends = seen + np.cumsum(lengths)
            for i, (split, lo, hi) in enumerate(zip(names, bounds, bounds[1:])):
                part, open_end = _part(table, ends - lengths, ends, lo, hi, first=i == 0, last=i == len(names) - 1)
                if len(part):
                    writers[split].write_table(part, row_group_size=1 << 30)
                    _add(stats[split], part)
                    stats[split].open_end |= open_end
            seen = int(ends[-1]) if len(ends) else seen
            pa.default_memory_pool().release_unused()
    whole.unlink()
    for name in names:
        fsync_path(raw / f"{name}.parquet")
    return stats


def _part(table: pa.Table, starts, ends, lo: int, hi: int, first: bool, last: bool) -> tuple[pa.Table, bool]:
    """The rows of table (characters [starts, ends) of the slice each) that fall in [lo, hi), the rows
    across lo or hi cut there; and whether the last one goes on past hi. An empty document belongs to
    the split whose range ends at or after it: the one before a cut it lies on."""
    a = 0 if first else int(np.searchsorted(ends, lo, side="right"))  # rows before a end at or before lo
    k = int(np.searchsorted(ends, hi, side="right"))  # rows before k end at or before hi
    b = len(ends) if last else k + int(k < len(ends) and starts[k] < hi)  # and row k, where it crosses hi
    if a >= b:
        return table.slice(0, 0), False
    part, open_end = table.slice(a, b - a), bool(ends[b - 1] > hi)
    head, tail = int(max(lo - starts[a], 0)), int(ends[b - 1] - hi) if open_end else 0
    if head or tail:  # a row across a cut: its part of the text only
        rows = part.slice(0, 1).to_pylist() + (part.slice(len(part) - 1, 1).to_pylist() if len(part) > 1 else [])
        if len(rows) == 1:
            rows[0]["text"] = rows[0]["text"][head : len(rows[0]["text"]) - tail]
        else:
            rows[0]["text"], rows[1]["text"] = rows[0]["text"][head:], rows[1]["text"][: len(rows[1]["text"]) - tail]
        middle = part.slice(1, max(len(part) - 2, 0))
        pieces = [pa.Table.from_pylist(rows[:1], SCHEMA), middle] + (
            [pa.Table.from_pylist(rows[1:], SCHEMA)] if len(rows) > 1 else []
        )
        part = pa.concat_tables(pieces)
    return part, open_end


def _build(
    folder: Path,
    source: Source,
    files: dict,
    build: BuildOptions,
    counts: dict[int, int],
    stats: dict[str, SplitStats],
    origin: dict,
    progress: Progress,
) -> dict:
    """vocab.json, the token shards, then manifest.json, all from raw/ in `folder`."""
    if build.vocab is not None:  # frozen: copied byte for byte, so its hash is the one it came with
        _, vocab, data = read_vocab(build.vocab)
        min_count = vocab.min_count
    else:
        min_count = (
            build.min_count
            if build.min_count is not None
            else auto_min_count(stats["train"].chars, web=source.dataset is not None)
        )
        vocab = Vocab.build(counts, min_count, build.max_vocab)
        data = vocab.to_json()
    write_atomic(folder / VOCAB_FILE, data)
    for split, st in stats.items():
        writer = ShardWriter(folder, split, vocab.dtype, build.shard_tokens)
        try:
            with progress.docs(f"encoding {split}", st.docs) as update:
                for tokens, unk, docs, nbytes in _encode_raw(folder / "raw" / f"{split}.parquet", vocab, st.open_end):
                    writer.write(tokens)
                    st.tokens += int(tokens.size)
                    st.unk += unk
                    update(docs, nbytes)
            st.shards = writer.close()
        finally:
            writer.abort()
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "minigpt": __version__,
        "dtype": vocab.dtype.name,
        "vocab_size": len(vocab),
        "vocab_sha256": hashlib.sha256(data).hexdigest(),
        "eot": vocab.eot,
        "unk": vocab.unk,
        "min_count": min_count,
        "source": source.to_json(),
        "source_files": files,
        "build": asdict(build),
        **origin,
        "raw": {s: f"raw/{s}.parquet" for s in stats},
        "splits": {s: asdict(st) for s, st in stats.items()},
    }
    write_json_atomic(folder / MANIFEST, manifest)
    return manifest


def _prefetch(items: Iterator, depth: int = 16) -> Iterator:
    """Run an iterator in a background thread, so `datasets` decompresses and parses while we count.

    gzip, the Arrow JSON parser and the parquet writer release the GIL, so the two overlap on 2 cores.
    The queue holds about one row group (16 x 1,000 documents), so the reader keeps going while a
    row group is compressed and written.
    """
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as e:  # handed to the consumer, which raises it in the main thread
            put((None, e))

    threading.Thread(target=run, daemon=True, name="minigpt-stream").start()
    try:
        while True:
            item, err = q.get()
            if err is not None:
                raise err
            if item is end:
                return
            yield item
    finally:
        stop.set()


def _encode_raw(
    path: Path, vocab: Vocab, open_end: bool = False, workers: int = 2
) -> Iterator[tuple[np.ndarray, int, int, int]]:
    """(tokens, unk count, docs, text bytes) of each row group of a raw parquet file, in order; with
    open_end, without the last document's <eot> (it goes on in the next split).

    Row groups are encoded on `workers` threads: the parquet reader, numpy and hashlib release the
    GIL, so two threads encode faster on 2 cores. At most workers + 1 row groups are in memory.
    """

    def encode(group: int) -> tuple[np.ndarray, int, int, int]:
        text = pq.ParquetFile(path).read_row_group(group, columns=["text"]).column("text")
        parts, unk = [], 0
        for chunk in text.chunks:
            for start in range(0, len(chunk), BATCH_DOCS):  # cache-sized pieces
                tokens, n = vocab.encode_docs(chunk.slice(start, BATCH_DOCS))
                parts.append(tokens)
                unk += n
        docs, nbytes = len(text), sum(utf8_bytes(chunk).size for chunk in text.chunks)
        del text
        pa.default_memory_pool().release_unused()  # hand the row group back to the OS now, not later
        tokens = np.concatenate(parts) if parts else np.zeros(0, vocab.dtype)
        return (tokens[:-1] if open_end and group == groups - 1 else tokens), unk, docs, nbytes

    groups = pq.ParquetFile(path).num_row_groups
    _ = vocab.lut  # built here once, not by each thread
    with ThreadPoolExecutor(workers, thread_name_prefix="minigpt-encode") as pool:
        pending: deque = deque()
        for group in range(groups):
            pending.append(pool.submit(encode, group))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _count_raw(path: Path) -> CharCounter:
    """Character counts of a raw parquet file, one row group in memory at a time.

    (ParquetFile.iter_batches would keep what it has read allocated to the end: memory would grow with N.)
    """
    counter, pf = CharCounter(), pq.ParquetFile(path)
    for group in range(pf.num_row_groups):
        for chunk in pf.read_row_group(group, columns=["text"]).column("text").chunks:
            counter.update(utf8_bytes(chunk))
        pa.default_memory_pool().release_unused()  # hand the row group back to the OS now, not later
    return counter


def _intact(out: Path, manifest: dict) -> bool:
    """A quick check for the no-op rerun: every file there, the vocabulary's hash, each shard's size."""
    try:
        return damage(out, manifest) is None and _raw_intact(out, manifest)
    except OSError:
        return False


def _raw_intact(out: Path, manifest: dict) -> bool:
    try:
        return all(
            pq.ParquetFile(out / "raw" / f"{s}.parquet").metadata.num_rows == manifest["splits"][s]["docs"]
            for s in splits_of(manifest)
        )
    except (OSError, pa.ArrowException):
        return False


def _diff(old: dict, new: dict, keys: list[str]) -> str:
    return "; ".join(f"{k} was {old.get(k)!r}, now {new.get(k)!r}" for k in keys)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _swap(tmp: Path, out: Path) -> None:
    """Rename the finished folder into place; an old dataset there is moved aside first, then removed.

    Ctrl-C and SIGTERM, a first or a second, wait until both renames are done (signals.held); after a kill
    in between, the next run's _clean_stale puts the complete folder back.
    """
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    with signals.held():
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        fsync_path(out.parent)
        signals.keep(f"{out} is complete")
    shutil.rmtree(old, ignore_errors=True)


def _clean_stale(out: Path) -> None:
    """Deal with what an interrupted or killed run left beside `out` (with the folder's lock held, no
    other process is writing there): a complete dataset (one with a manifest) is put back where `out`
    is missing one; the rest is removed."""
    if not out.parent.is_dir():
        return
    name = glob.escape(out.name)
    stale = [
        p
        for p in sorted(out.parent.glob(f".{name}.tmp-*")) + sorted(out.parent.glob(f".{name}.old-*"))
        if (pid := p.name.rsplit("-", 1)[-1]).isdigit() and int(pid) != os.getpid()
    ]
    for p in stale:  # a finished .tmp (the newer dataset) before an .old one
        if not (out / MANIFEST).exists() and read_manifest(p) is not None:
            if out.exists() and not any(out.iterdir()):
                out.rmdir()
            if not out.exists():
                os.replace(p, out)
                continue
        shutil.rmtree(p, ignore_errors=True)


def summary(result: Result) -> str:
    """What was built, split by split, as minigpt-prepare prints it."""
    m, lines = result.manifest, []
    if result.action == "unchanged":
        lines.append(f"{result.out}: already complete with these arguments; nothing to do")
    else:
        how = "rebuilt from raw/ (no streaming)" if result.action == "rebuilt" else "built"
        lines.append(f"{result.out}: {how} in {result.seconds:.1f} s")
    text_mb = 0.0
    for split, s in m["splits"].items():
        rate = s["unk"] / s["tokens"] if s["tokens"] else 0.0
        lines.append(
            f"  {split:5} {s['docs']:>10,} docs {s['chars']:>14,} chars {s['tokens']:>14,} tokens "
            f"{s['unk']:>10,} unk ({rate:.4%}) {len(s['shards']):>4} shard(s)"
        )
        text_mb += s["bytes"] / 1e6
    frozen = m["build"].get("vocab")
    origin = f"frozen, from {frozen}" if frozen else f"min count {m['min_count']}"
    lines.append(f"  vocabulary {m['vocab_size']} entries ({origin}), {m['dtype']} shards")
    lines.append(
        f"  validation: {_val_origin(m)}" + (f"; hub commit {m['source_commit']}" if m.get("source_commit") else "")
    )
    if "test" in m["splits"]:
        lines.append(f"  test: {_test_origin(m)}, kept apart (minigpt-eval --split test)")
    if result.action != "unchanged" and result.seconds > 0:
        lines.append(f"  {text_mb:,.1f} MB of text, {text_mb / result.seconds:,.1f} MB/s")
    return "\n".join(lines)


def _test_origin(m: dict) -> str:
    how = m.get("test_from")
    if how == "fraction":
        return f"the last {m['test_fraction']:g} of the slice's characters"
    if how == "after_docs":
        return "the documents after the " + ("validation" if m.get("val_from") == "after_docs" else "train") + " ones"
    return "--test-data-files" if how == "test_data_files" else f"the {m['source'].get('test_split')} split"


def _val_origin(m: dict) -> str:
    src, how = m["source"], m.get("val_from")
    if how == "fraction":
        cut = ", a document cut in two there" if m["splits"]["train"].get("open_end") else ""
        where = " before the test split's" if m.get("test_from") == "fraction" else ""
        last = "" if where else "last "
        return f"the {last}{m['val_fraction']:g} of the slice's characters{where}{cut}"
    if how == "after_docs":
        return "the documents after the train ones"
    if how == "val_data_files":
        return "--val-data-files"
    return f"the {src.get('val_split') or 'validation'} split" if how == "val_split" else "(not recorded)"
