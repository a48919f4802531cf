"""Property tests of the slice minigpt-prepare cuts, from every local form, under every validation rule,
against plain readers and a plain slicer written here.

Random documents (empty ones, CRLF, non-ASCII up to 4-byte characters, a few long ones), split at random
into files (JSON lines with LF or CRLF line ends and blank lines between records); random N, M, --val-fraction, --min-count and --shard-tokens. The library's read sizes (reader
batches, text blocks, raw row groups, encoding pieces: `small_reads`) are made small, so that a few hundred
characters cross every boundary a real source crosses at 1,000 documents, 8 MB blocks or 16 MB row groups.
Checked each time: the decoded shards equal the reference slice, the raw slice holds its documents
verbatim, the manifest's counts equal the reference's, the vocabulary's counts equal a Counter of train,
and too few documents give one message with the right numbers.
"""

import gzip
import json
import math
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, strategies as st

from conftest import hub_env, run_inprocess, run_subprocess
from fakehub import FakeHub
from test_prepare import assert_clean_error, shard_tokens
from minigpt.data import prepare as prepare_module, stream, textfiles, vocab as vocab_module
from minigpt.data.vocab import EOT, UNK

BLANK = " \t\r\n"  # what makes a line of plain text blank (Python's str.strip() knows more)
ALPHABET = "ab z.,\t\r\n\u00e9\u00df\u2014\u4e2d\U0001f600\u2028"
DOC = st.text(ALPHABET, max_size=24)
LONG_DOC = st.text(ALPHABET, min_size=200, max_size=1200)


# ---- the library's read sizes, made small ----

SIZES = st.fixed_dictionaries(
    {
        "batch_docs": st.integers(1, 6),
        "block_bytes": st.integers(1, 48),
        "row_group_bytes": st.integers(1, 300),
        "chunk": st.integers(1, 64),
    }
)


@contextmanager
def small_reads(batch_docs: int, block_bytes: int, row_group_bytes: int, chunk: int):
    """Reader batches of `batch_docs` documents (datasets' iter and the encoding pieces), plain text read in
    blocks of `block_bytes`, raw row groups of ~`row_group_bytes` of text, numpy passes of `chunk` bytes."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stream, "BATCH_DOCS", batch_docs)
        mp.setattr(prepare_module, "BATCH_DOCS", batch_docs)
        mp.setattr(textfiles, "BLOCK_BYTES", block_bytes)
        mp.setattr(prepare_module, "ROW_GROUP_BYTES", row_group_bytes)
        mp.setattr(vocab_module, "_CHUNK", chunk)
        yield


# ---- inputs, written in each form, and read back plainly ----


def split_into_files(draw, docs: list) -> list[list]:
    """docs cut at random places into consecutive files (none empty)."""
    if len(docs) <= 1:
        return [docs]
    cuts = sorted(draw(st.sets(st.integers(1, len(docs) - 1), max_size=4)))
    bounds = [0, *cuts, len(docs)]
    return [docs[a:b] for a, b in zip(bounds, bounds[1:])]


def write_records(
    folder: Path, form: str, files: list[list[str]], draw, column: str = "text", prefix: str = "part"
) -> Path:
    """Each file's documents as JSON lines (.jsonl / .json.gz) or Parquet of random row-group size."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, docs in enumerate(files):
        path = folder / f"{prefix}-{i:05d}-of-{len(files):05d}.{form}"
        if form == "parquet":
            table = pa.table({"id": list(range(len(docs))), column: docs})
            pq.write_table(table, path, row_group_size=draw(st.integers(1, max(len(docs), 1))))
            continue
        ascii_only, end = draw(st.booleans()), draw(st.sampled_from(["\n", "\r\n"]))  # LF or CRLF files
        blank = draw(st.lists(st.booleans(), min_size=len(docs), max_size=len(docs)))  # blank lines between records
        data = "".join(
            json.dumps({"id": j, column: d}, ensure_ascii=ascii_only) + end + (end if b else "")
            for j, (d, b) in enumerate(zip(docs, blank))
        )
        data = data.encode("utf-8")
        path.write_bytes(gzip.compress(data, mtime=0) if form == "json.gz" else data)
    return folder


def read_records(folder: Path, column: str = "text", prefix: str = "") -> list[str]:
    """The plain reader: every file (whose name starts with prefix) in name order, every record in file order."""
    docs = []
    for path in sorted(p for p in folder.iterdir() if p.name.startswith(prefix)):
        if path.suffix == ".parquet":
            docs += pq.read_table(path).column(column).to_pylist()
            continue
        data = path.read_bytes()
        data = gzip.decompress(data) if path.suffix == ".gz" else data
        docs += [json.loads(line)[column] for line in data.decode("utf-8").split("\n") if line.strip()]
    return docs


def text_docs(text: str, doc_split: str) -> list[str]:
    """--doc-split, written plainly: a file; runs of non-blank lines; non-blank lines (ends kept)."""
    if doc_split == "file":
        return [text] if text.strip(BLANK) else []
    lines = text.split("\n")
    lines = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    if doc_split == "line":
        return [line for line in lines if line.strip(BLANK)]
    docs, run = [], ""
    for line in lines:
        if line.strip(BLANK):
            run += line
        elif run:
            docs, run = docs + [run], ""
    return docs + ([run] if run else [])


# ---- the slice, cut plainly ----


def cut_by_characters(docs: list[str], fraction: float) -> tuple[list[str], list[str], bool] | None:
    """nanoGPT's cut: train is the first int(n * (1 - F)) characters; a document across it is cut in two.
    None where the cut leaves one side empty."""
    n = sum(map(len, docs))
    cut = int(n * (1 - fraction))
    if cut in (0, n):
        return None
    train, val, pos, open_end = [], [], 0, False
    for d in docs:
        start, pos = pos, pos + len(d)
        if pos <= cut:
            train.append(d)
        elif start >= cut:
            val.append(d)
        else:
            train.append(d[: cut - start])
            val.append(d[cut - start :])
            open_end = True
    return train, val, open_end


def expect_dataset(
    out: Path, train: list[str], val: list[str], open_end: bool, min_count: int, shard_size: int
) -> None:
    """The dataset in `out` is exactly this slice (and has no test split)."""
    expect_splits(out, {"train": (train, open_end), "val": (val, False)}, min_count, shard_size)


def expect_splits(out: Path, splits: dict[str, tuple[list[str], bool]], min_count: int, shard_size: int) -> None:
    """The dataset in `out` is exactly these splits (documents, and whether the last goes on in the next
    split): shards, raw/, manifest counts and vocabulary, and no other split."""
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    counts = Counter("".join(splits["train"][0]))
    assert vocab["counts"] == dict(counts)
    assert vocab["itos"] == [EOT, UNK] + sorted(c for c, k in counts.items() if k >= min_count)
    ids = {c: i for i, c in enumerate(vocab["itos"]) if i > 1}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["min_count"] == min_count and list(manifest["splits"]) == list(splits)
    assert sorted(p.name for p in (out / "raw").iterdir()) == sorted(f"{s}.parquet" for s in splits)
    for split, (docs, open_end) in splits.items():
        assert manifest["splits"][split].get("open_end", False) == open_end, split
        tokens = []
        for i, d in enumerate(docs):
            tokens += [ids.get(c, 1) for c in d]
            if not (open_end and i == len(docs) - 1):
                tokens.append(0)
        assert shard_tokens(out, split).tolist() == tokens, split
        assert pq.read_table(out / "raw" / f"{split}.parquet").column("text").to_pylist() == docs, split
        s = manifest["splits"][split]
        assert (s["docs"], s["chars"], s["bytes"], s["tokens"], s["unk"]) == (
            len(docs),
            sum(map(len, docs)),
            sum(len(d.encode("utf-8")) for d in docs),
            len(tokens),
            sum(c not in ids for d in docs for c in d),
        ), split
        sizes = [sh["tokens"] for sh in s["shards"]]
        assert len(sizes) == math.ceil(len(tokens) / shard_size) and sum(sizes) == len(tokens)
        assert all(k == shard_size for k in sizes[:-1]) and 0 < sizes[-1] <= shard_size


def draw_count(draw, limit: int, what: str) -> int | str | None:
    """A --docs / --val-docs value: a number up to a little past `limit`, `all`, or left out (None)."""
    return draw(st.one_of(st.integers(1, max(limit, 1) + 2), st.just("all"), st.none()), label=what)


def default_val_docs(n: int) -> int:
    return min(max(n // 10, 1), 10_000)


def prepare_and_check(args: list, sizes: dict, expected, min_count: int, shard_size: int, error: tuple = ()):
    """Run minigpt-prepare with args (and --shard-tokens); the dataset equals `expected` (train, val,
    open_end), or, where expected is None, the command fails with one message naming `error`."""
    with tempfile.TemporaryDirectory() as tmp, small_reads(**sizes):
        out = Path(tmp) / "ds"
        r = run_inprocess(*args, "--shard-tokens", shard_size, "--out", out)
        if expected is None:
            assert_clean_error(r, *error, out=out)
        else:
            assert r.code == 0, r.output
            expect_dataset(out, *expected, min_count, shard_size)


def after_docs_slice(docs: list[str], n, m) -> tuple[tuple | None, tuple]:
    """(train, val, False) for --docs n --val-docs m from the documents after the n, or (None, what the
    error says)."""
    n_int = len(docs) if n == "all" else n
    if not docs:
        return None, ("has no documents (empty files, or only blank lines?)",)
    if n_int > len(docs):
        return None, (f"has only {len(docs)} documents, but --docs {n} needs {n_int - len(docs)} more",)
    want = None if m == "all" else (default_val_docs(n_int) if m is None else m)
    val = docs[n_int:] if want is None else docs[n_int : n_int + want]
    if want is not None and n_int + want > len(docs):
        return None, (f"has only {len(docs)} documents, but --val-docs {want} needs {n_int + want - len(docs)} more",)
    if not val:
        return None, (f"no documents after the first {n_int:,}", "--val-data-files")
    return (docs[:n_int], val, False), ()


def fraction_slice(docs: list[str], n, fraction: float | None) -> tuple[tuple | None, tuple]:
    n_int = len(docs) if n in ("all", None) else n
    if not docs:
        return None, ("has no documents (empty files, or only blank lines?)",)
    if n_int > len(docs):
        return None, (f"has only {len(docs)} documents, but --docs {n} needs {n_int - len(docs)} more",)
    got = cut_by_characters(docs[:n_int], fraction or 0.1)
    return (got, ()) if got is not None else (None, ("too few to cut",))


def draw_fraction(draw, n, docs: list[str]) -> float | None:
    """--val-fraction F: left out (0.1) only with --docs all, where local files are cut by default; any F;
    or one that puts the cut exactly where one of the slice's documents ends."""
    sliced = docs if n in ("all", None) else docs[:n]
    total, ends = sum(map(len, sliced)), np.cumsum([len(d) for d in sliced]).tolist()
    exact = [
        1 - (c + 0.5) / total for c in ends if total and 0 < 1 - (c + 0.5) / total <= 0.5
    ]  # int(total * (1 - F)) == c
    choices = [st.floats(0.01, 0.5)] + ([st.sampled_from(exact)] if exact else [])
    return draw(st.one_of(st.none(), *choices) if n in ("all", None) else st.one_of(*choices))


def own_files_min_count(train: list[str]) -> int:
    return max(1, math.ceil(sum(map(len, train)) / 1_000_000))


def val_files_slice(docs: list[str], held_out: list[str], n, m) -> tuple[tuple | None, tuple]:
    n_int = len(docs) if n in ("all", None) else n
    if n_int > len(docs):
        return None, (f"has only {len(docs)} documents, but --docs {n} needs {n_int - len(docs)} more",)
    want = None if m == "all" or (m is None and n in ("all", None)) else (default_val_docs(n_int) if m is None else m)
    if want is not None and want > len(held_out):
        return None, (f"has only {len(held_out)} documents, but --val-docs {want} needs {want - len(held_out)} more",)
    return (docs[:n_int], held_out if want is None else held_out[:want], False), ()


def after_or_fraction(draw, rule: str, docs: list[str], n) -> tuple[list, tuple | None, tuple]:
    """Validation from the documents after the N (where --docs is a number and the rule says so) or a
    --val-fraction cut: (the flags, the expected slice or None, what the error says)."""
    if rule == "after_docs" and n not in ("all", None):
        m = draw_count(draw, len(docs) - n, "--val-docs")
        return (["--val-docs", m] if m is not None else []), *after_docs_slice(docs, n, m)
    fraction = draw_fraction(draw, n, docs)
    return (["--val-fraction", fraction] if fraction is not None else []), *fraction_slice(docs, n, fraction)


RULES = st.sampled_from(["after_docs", "fraction", "val_data_files"])


@pytest.mark.parametrize("form", ["jsonl", "json.gz", "parquet"])
@given(data=st.data())
def test_records_slice_equals_the_plain_slice(form, data):
    draw = data.draw
    docs = draw(st.lists(DOC, min_size=1, max_size=40)) + draw(st.lists(LONG_DOC, max_size=2))
    docs = draw(st.permutations(docs))
    rule, sizes, shard_size = draw(RULES), draw(SIZES), draw(st.integers(1, 400))
    min_count = draw(st.one_of(st.none(), st.integers(1, 3)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_records(Path(tmp) / "train", form, split_into_files(draw, docs), draw)
        docs = read_records(folder)
        args = ["--data-files", folder] + (["--min-count", min_count] if min_count else [])
        n = draw_count(draw, len(docs), "--docs")
        args += ["--docs", n] if n is not None else []
        if rule == "val_data_files":
            held_out = draw(st.lists(DOC, min_size=1, max_size=12))
            val_folder = write_records(Path(tmp) / "val", form, split_into_files(draw, held_out), draw)
            held_out = read_records(val_folder)
            m = draw_count(draw, len(held_out), "--val-docs")
            args += ["--val-data-files", val_folder] + (["--val-docs", m] if m is not None else [])
            expected, error = val_files_slice(docs, held_out, n, m)
        else:
            more, expected, error = after_or_fraction(draw, rule, docs, n)
            args += more
        mc = min_count or (own_files_min_count(expected[0]) if expected else 1)
        prepare_and_check(args, sizes, expected, mc, shard_size, error)


TEXT_FILE = st.text(ALPHABET + "\n\n", max_size=80)


@given(data=st.data())
def test_text_files_slice_equals_the_plain_slice(data):
    draw = data.draw
    texts = draw(
        st.lists(st.one_of(TEXT_FILE, st.text(ALPHABET + "\n", min_size=300, max_size=1500)), min_size=1, max_size=5)
    )
    doc_split = draw(st.sampled_from(["file", "paragraph", "line", None]))
    rule, sizes, shard_size = draw(st.sampled_from(["after_docs", "fraction"])), draw(SIZES), draw(st.integers(1, 400))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "texts"
        folder.mkdir()
        for i, text in enumerate(texts):  # bytes as they are: CRLF stays CRLF
            (folder / f"{i:03d}.txt").write_bytes(text.encode("utf-8"))
        docs = [
            d for p in sorted(folder.iterdir()) for d in text_docs(p.read_bytes().decode("utf-8"), doc_split or "file")
        ]
        args = ["--data-files", folder] + (["--doc-split", doc_split] if doc_split else [])
        n = draw_count(draw, len(docs), "--docs")
        args += ["--docs", n] if n is not None else []
        more, expected, error = after_or_fraction(draw, rule, docs, n)
        prepare_and_check(
            args + more, sizes, expected, own_files_min_count(expected[0]) if expected else 1, shard_size, error
        )


@given(data=st.data())
def test_hub_like_folder_slice_equals_the_plain_slice(data):
    """A folder laid out like a hub repo (data/{split}-*-of-*.{parquet,jsonl}, a card without configs) goes
    through datasets.load_dataset as a hub id does: validation is its validation split where it has one,
    else the documents after the N; characters below 10 uses are <unk> (web text's rule)."""
    draw = data.draw
    docs = draw(st.lists(DOC, min_size=1, max_size=40)) + draw(st.lists(LONG_DOC, max_size=1))
    form, column = draw(st.sampled_from(["parquet", "jsonl"])), draw(st.sampled_from(["text", "story"]))
    sizes, shard_size = draw(SIZES), draw(st.integers(1, 400))
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        write_records(repo / "data", form, split_into_files(draw, docs), draw, column, prefix="train")
        (repo / "README.md").write_text("---\nlicense: odc-by\n---\n\n# A dataset\n")
        held_out = draw(st.one_of(st.none(), st.lists(DOC, min_size=1, max_size=10)))
        if held_out is not None:
            write_records(repo / "data", form, split_into_files(draw, held_out), draw, column, prefix="validation")
        by_split = {s: read_records(repo / "data", column, prefix=s) for s in ("train", "validation")}
        docs = by_split["train"]
        n = draw(st.integers(1, len(docs) + 1))
        m = draw_count(draw, len(docs), "--val-docs")
        args = ["--dataset", repo, "--text-column", column, "--docs", n] + (["--val-docs", m] if m is not None else [])
        if held_out is None:
            expected, error = after_docs_slice(docs, n, m)
        else:
            expected, error = val_files_slice(docs, by_split["validation"], n, m)
        min_count = max(10, math.ceil(sum(map(len, expected[0])) / 1_000_000)) if expected else 10
        prepare_and_check(args, sizes, expected, min_count, shard_size, error)


def cut_parts(docs: list[str], fractions: list[float]) -> list[tuple[list[str], bool]] | None:
    """nanoGPT's cut, into len(fractions) + 1 parts: the last parts are the given fractions of the n
    characters, the first part starts at 0 and each later one at int(n * (1 - the fractions from it
    on)); a document across a cut is cut there, and its part goes on in the next (open end). An empty
    document belongs to the first part that ends at or after it. None where a part would be empty."""
    n = sum(map(len, docs))
    bounds = [0] + [int(n * (1 - sum(fractions[i:]))) for i in range(len(fractions))] + [n]
    if any(a >= b for a, b in zip(bounds, bounds[1:])):
        return None
    parts, pos = [([], False) for _ in fractions] + [([], False)], 0
    for d in docs:
        start, end, pos = pos, pos + len(d), pos + len(d)
        for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
            if not d:
                if end <= hi:
                    parts[i][0].append(d)
                    break
                continue
            a, b = max(start, lo), min(end, hi)
            if a < b:
                parts[i][0].append(d[a - start : b - start])
                parts[i] = (parts[i][0], end > hi)
    return parts


def draw_cut_fractions(draw, docs: list[str], k: int) -> list[float]:
    """k fractions for the cuts (--val-fraction, --test-fraction; together at most 0.5), each cut drawn
    anywhere in the second half of the characters or exactly where a document ends."""
    total = sum(map(len, docs))
    lo = total // 2 + 1
    if total - lo < k:  # too few characters for k cuts: fractions as they come (the command must refuse them)
        return [draw(st.floats(0.01, 0.5 / k)) for _ in range(k)]
    ends = [e for e in np.cumsum([len(d) for d in docs]).tolist() if lo <= e < total]
    point = st.one_of(st.integers(lo, total - 1), *([st.sampled_from(ends)] if ends else []))
    points = sorted(draw(st.sets(point, min_size=k, max_size=k)))
    from_end = [1 - (p + 0.5) / total for p in points]  # the fraction of the characters from each cut on
    return [a - b for a, b in zip(from_end, from_end[1:])] + [from_end[-1]]


@given(data=st.data())
def test_a_test_split_slice_equals_the_plain_slice(data):
    """A third split under each rule (the documents after train's or validation's, a --test-fraction cut,
    --test-data-files) beside each validation rule: every split equals the plain slice, none overlaps."""
    draw = data.draw
    docs = draw(st.lists(DOC, min_size=3, max_size=40)) + draw(st.lists(LONG_DOC, max_size=2))
    docs = draw(st.permutations(docs))
    val_rule = draw(st.sampled_from(["after_docs", "fraction", "val_data_files"]), label="val")
    test_rule = draw(st.sampled_from(["after_docs", "fraction", "test_data_files"]), label="test")
    sizes, shard_size = draw(SIZES), draw(st.integers(1, 400))
    form = draw(st.sampled_from(["jsonl", "parquet"]))
    with tempfile.TemporaryDirectory() as tmp:
        docs = read_records(write_records(Path(tmp) / "train", form, split_into_files(draw, docs), draw))
        after = [val_rule, test_rule].count("after_docs")  # rules that take documents after the N
        n = draw(st.integers(1, len(docs) - after) if after else st.one_of(st.integers(1, len(docs)), st.just("all")))
        sliced, rest = (docs, []) if n == "all" else (docs[:n], docs[n:])
        args, splits, fractions = ["--data-files", Path(tmp) / "train", "--docs", n], {}, []
        for split, rule in (("val", val_rule), ("test", test_rule)):
            flag = f"--{split}-docs"
            if rule == "after_docs":
                k = draw(st.integers(1, len(rest) - (split == "val" and test_rule == "after_docs")))
                splits[split], rest, args = (rest[:k], False), rest[k:], args + [flag, k]
            elif rule.endswith("data_files"):
                own = draw(st.lists(DOC, min_size=1, max_size=12))
                folder = write_records(Path(tmp) / split, form, split_into_files(draw, own), draw)
                own, k = read_records(folder), draw(st.one_of(st.none(), st.just("all"), st.integers(1, 12)))
                want = len(own) if k == "all" or (k is None and n == "all") else (k or default_val_docs(n))
                args += [f"--{split}-data-files", folder] + ([flag, k] if k is not None else [])
                splits[split] = (own[:want], False) if want <= len(own) else None
            else:
                fractions.append(split)
        if fractions:
            values = draw_cut_fractions(draw, sliced, len(fractions))
            args += [a for s, f in zip(fractions, values) for a in (f"--{s}-fraction", f)]
            parts = cut_parts(sliced, values)
            train = parts[0] if parts else None
            splits.update(zip(fractions, parts[1:]) if parts else ((s, None) for s in fractions))
        else:
            train = (sliced, False)
        expected = {"train": train, "val": splits["val"], "test": splits["test"]}
        short = [s for s, v in expected.items() if v is None]
        error = ("has only",) if any(s not in fractions for s in short if s != "train") else ("too few to cut",)
        mc = own_files_min_count(train[0]) if train else 1
        with tempfile.TemporaryDirectory() as tmp2, small_reads(**sizes):
            out = Path(tmp2) / "ds"
            r = run_inprocess(*args, "--shard-tokens", shard_size, "--out", out)
            if short:
                assert_clean_error(r, *error, out=out)
            else:
                assert r.code == 0, r.output
                expect_splits(out, expected, mc, shard_size)


# ---- at the library's own batch sizes: the reported failures, and the hub through the fake hub ----


def jsonl(path: Path, docs: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return path


WORDS = [f"doc {i}: " + "wxyz" * (i % 7) + "\u00e9" * (i % 3) for i in range(5000)]


@pytest.mark.parametrize("n, m", [(2000, 200), (2500, 1000), (1000, 1000), (4999, 1), (3000, "all")])
def test_validation_after_n_crosses_the_readers_batches(tmp_path, n, m):
    """The reported bug: validation from the documents after N failed whenever N + M left the batch of
    1,000 documents that train's N-th ended in (train's reader, closed, ended the shared pass)."""
    f = jsonl(tmp_path / "docs.jsonl", WORDS)
    r = run_inprocess("--data-files", f, "--docs", n, "--val-docs", m, "--out", tmp_path / "ds")
    assert r.code == 0, r.output
    val = WORDS[n:] if m == "all" else WORDS[n : n + m]
    expect_dataset(tmp_path / "ds", WORDS[:n], val, False, 1, 100_000_000)


def test_hub_dataset_through_the_fake_hub_crosses_the_readers_batches(tmp_path):
    """The hub's code path at its own batch size: 2,600 documents in two Parquet files of row groups of
    700, train the first 2,000 (two whole batches), validation the 450 after them."""
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "README.md").write_text("---\nlicense: odc-by\n---\n")
    for i, part in enumerate((WORDS[:1300], WORDS[1300:2600])):
        pq.write_table(pa.table({"text": part}), repo / "data" / f"train-{i:05d}-of-00002.parquet", row_group_size=700)
    with FakeHub(repo, "acme/words", data_substring=".parquet") as hub:
        r = run_subprocess(
            "--dataset",
            "acme/words",
            "--docs",
            2000,
            "--val-docs",
            450,
            "--min-count",
            1,
            "--out",
            tmp_path / "ds",
            env=hub_env(hub.url),
        )
    assert r.code == 0, r.output
    expect_dataset(tmp_path / "ds", WORDS[:2000], WORDS[2000:2450], False, 1, 100_000_000)


def test_val_docs_with_docs_all_and_nothing_after_is_one_message(tmp_path):
    f = jsonl(tmp_path / "docs.jsonl", WORDS[:30])
    r = run_inprocess("--data-files", f, "--docs", "all", "--val-docs", 5, "--out", tmp_path / "ds")
    assert_clean_error(
        r,
        "--val-docs 5 asks for the documents after the train ones, but --docs all leaves none",
        "--val-fraction",
        out=tmp_path / "ds",
    )
    r = run_inprocess("--data-files", f, "--docs", 30, "--val-docs", "all", "--out", tmp_path / "ds")
    assert_clean_error(r, "no documents after the first 30, which train takes", out=tmp_path / "ds")
