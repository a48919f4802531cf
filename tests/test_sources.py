"""minigpt-prepare on sources other than C4: plain text files, any hub dataset with a text column (through
the fake hub and as a local folder), a --val-fraction cut, a frozen --vocab, and their bad input."""

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import hub_env, run_inprocess, run_subprocess
from fakehub import FakeHub
from test_prepare import assert_clean_error, files_of, shard_tokens
from minigpt.data.source import resolve_source
from minigpt.data.vocab import EOT, UNK, Vocab

PLAY = (
    "First Citizen:\r\nBefore we proceed any further, hear me speak. Caf\u00e9 \u2014 na\u00efve.\r\n\r\n"
    "All:\r\nSpeak, speak.\r\n\r\n\r\n"
    "First Citizen:\r\nYou are all resolved rather to die than to famish?\r\n  \r\n"
    "All:\r\nResolved. resolved. Caf\u00e9 \u2014 na\u00efve. Q.E.D. \u00bfZ?\r\n"
)


def decode(folder: Path, split: str) -> str:
    return Vocab.load(folder / "vocab.json").decode(shard_tokens(folder, split))


def encoded(docs: list[str], folder: Path) -> str:
    """What the shards should decode to: each document and <eot>, characters outside the vocabulary <unk>."""
    known = set(Vocab.load(folder / "vocab.json").itos[2:])
    return "".join("".join(c if c in known else UNK for c in d) + EOT for d in docs)


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def lines(text: str) -> list[str]:
    """Each line with its "\n" (a "\r" before it stays in the line); the last may have none."""
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def split_docs(text: str, doc_split: str) -> list[str]:
    """The rules, written plainly: a file; runs of non-blank lines; non-blank lines (blank: whitespace only)."""
    if doc_split == "file":
        return [text] if text.strip() else []
    if doc_split == "line":
        return [line for line in lines(text) if line.strip()]
    docs, run = [], ""
    for line in lines(text):
        if line.strip():
            run += line
        elif run:
            docs.append(run)
            run = ""
    return docs + ([run] if run else [])


def test_one_text_file_is_cut_90_10_by_characters_as_nanogpt_cuts_it(tmp_path):
    f = tmp_path / "input.txt"
    f.write_bytes(PLAY.encode("utf-8"))
    r = run_inprocess("--data-files", f, "--out", tmp_path / "ds")
    assert r.code == 0, r.output
    out, n = tmp_path / "ds", len(PLAY)
    # nanoGPT: train = data[:int(n * 0.9)], val = the rest; the file is one document, cut in two:
    # train's part ends without <eot> (the document goes on), val's part ends with one
    assert decode(out, "train") == PLAY[: int(n * 0.9)]
    vocab = Vocab.load(out / "vocab.json")  # train's characters: val's others are <unk>, counted
    held_out = "".join(c if c in vocab.itos else UNK for c in PLAY[int(n * 0.9) :])
    assert decode(out, "val") == held_out + EOT and manifest(out)["splits"]["val"]["unk"] == held_out.count(UNK) > 0
    m = manifest(out)
    assert m["val_from"] == "fraction" and m["val_fraction"] == 0.1 and m["source"]["docs"] is None
    assert m["splits"]["train"]["open_end"] and m["splits"]["train"]["tokens"] == int(n * 0.9)
    assert m["splits"]["train"]["unk"] == 0 and m["min_count"] == 1  # a text of one's own keeps every character
    assert "\r" in vocab.itos and "\u2014" in vocab.itos  # CRLF kept verbatim, and every character of train
    assert "validation: the last 0.1 of the slice's characters, a document cut in two there" in r.stdout
    # the same command again: nothing to do; into another folder: byte-identical files
    assert "nothing to do" in run_inprocess("--data-files", f, "--out", out).stdout
    assert run_inprocess("--data-files", f, "--out", tmp_path / "again").code == 0
    assert files_of(out) == files_of(tmp_path / "again")


@pytest.mark.parametrize("doc_split", ["file", "paragraph", "line"])
def test_a_folder_of_text_files_and_each_doc_split(tmp_path, doc_split):
    folder = tmp_path / "texts"
    (folder / "b").mkdir(parents=True)
    texts = {"a.txt": PLAY, "b/c.txt": "Line one\nline two \u2603\n\nlast line, no newline", "d.txt": ""}
    for name, text in texts.items():
        (folder / name).write_bytes(text.encode("utf-8"))
    (folder / "notes.md").write_text("not read")
    val = tmp_path / "val.txt"
    val.write_text("Held out.\n\nAnother held-out paragraph.\n")
    r = run_inprocess(
        "--data-files", folder, "--val-data-files", val, "--doc-split", doc_split, "--out", tmp_path / "ds"
    )
    assert r.code == 0, r.output
    ordered = [texts[k] for k in sorted(texts)]  # files in sorted path order: a.txt, b/c.txt, d.txt (empty)

    train = [d for t in ordered for d in split_docs(t, doc_split)]
    assert decode(tmp_path / "ds", "train") == encoded(train, tmp_path / "ds")
    assert decode(tmp_path / "ds", "val") == encoded(split_docs(val.read_text(), doc_split), tmp_path / "ds")
    m = manifest(tmp_path / "ds")
    assert m["splits"]["train"]["docs"] == len(train) and m["val_from"] == "val_data_files"
    assert m["source"]["doc_split"] == doc_split
    assert pq.read_table(tmp_path / "ds" / "raw" / "train.parquet").column("text").to_pylist() == train  # verbatim
    assert (
        train[0]
        == {"file": PLAY, "paragraph": PLAY.split("\r\n\r\n")[0] + "\r\n", "line": "First Citizen:\r\n"}[doc_split]
    )


def test_val_fraction_cuts_inside_a_document_and_rebuilds_offline(tmp_path):
    f = tmp_path / "lines.txt"
    text = "".join(f"line {i:03d} of the text\n" for i in range(201))  # 21 characters a line: cut at 3,165
    f.write_text(text)
    out = tmp_path / "ds"
    args = ("--data-files", f, "--doc-split", "line", "--val-fraction", 0.25, "--out", out)
    assert run_inprocess(*args).code == 0
    lines = text.splitlines(keepends=True)
    cut = int(len(text) * 0.75)
    train = decode(out, "train")
    assert train.replace(EOT, "") == text[:cut]
    assert decode(out, "val").replace(EOT, "") == text[cut:]
    # <eot> after every whole line; the cut line's first part has none, its second part has one
    first = lines[: text[:cut].count("\n")]
    assert train == "".join(x + EOT for x in first) + text[len("".join(first)) : cut]
    assert decode(out, "val").startswith(text[cut : len("".join(first)) + len(lines[len(first)])] + EOT)
    m = manifest(out)
    assert (
        m["splits"]["train"]["docs"] + m["splits"]["val"]["docs"] == len(lines) + 1 and m["splits"]["train"]["open_end"]
    )
    # the frozen slice serves a rebuild with the text gone
    f.unlink()
    r = run_inprocess(*args, "--min-count", 2)
    assert r.code == 0 and "rebuilt from raw/" in r.stdout, r.output
    assert decode(out, "train") == train
    # a cut that falls between two documents cuts none
    f.write_text(text[: 21 * 200])
    assert run_inprocess(*args, "--force").code == 0
    assert (
        decode(out, "train") == "".join(x + EOT for x in lines[:150])
        and not manifest(out)["splits"]["train"]["open_end"]
    )


def test_frozen_vocab_encodes_new_text_with_unk_where_expected(tmp_path):
    (tmp_path / "a.txt").write_text("abc abc abd\n" * 10)
    (tmp_path / "b.txt").write_text("abz xyz\n" * 10)
    assert run_inprocess("--data-files", tmp_path / "a.txt", "--out", tmp_path / "a").code == 0
    for given in (tmp_path / "a", tmp_path / "a" / "vocab.json"):
        out = tmp_path / "b"
        r = run_inprocess("--data-files", tmp_path / "b.txt", "--vocab", given, "--out", out, "--force")
        assert r.code == 0, r.output
        assert (out / "vocab.json").read_bytes() == (tmp_path / "a" / "vocab.json").read_bytes()
        m = manifest(out)
        assert m["vocab_sha256"] == manifest(tmp_path / "a")["vocab_sha256"]
        assert m["build"]["vocab"] == str(tmp_path / "a" / "vocab.json")
        text = decode(out, "train") + decode(out, "val")
        assert text.replace(EOT, "") == ("abz xyz\n" * 10).replace("z", UNK).replace("x", UNK).replace("y", UNK)
        unk = sum(m["splits"][s]["unk"] for s in ("train", "val"))
        assert unk == 40 and f"{m['splits']['train']['unk']:,} unk" in r.stdout
    # the vocabulary file changed: the same command rebuilds from raw/ with it
    v = json.loads((tmp_path / "a" / "vocab.json").read_text())
    v["itos"].append("z")
    (tmp_path / "a" / "vocab.json").write_text(json.dumps(v))
    r = run_inprocess("--data-files", tmp_path / "b.txt", "--vocab", tmp_path / "a", "--out", tmp_path / "b")
    assert r.code == 0 and "rebuilt from raw/" in r.stdout
    assert sum(manifest(tmp_path / "b")["splits"][s]["unk"] for s in ("train", "val")) == 20  # x and y


def test_a_frozen_vocab_in_another_layout_is_copied_byte_for_byte(tmp_path):
    """--vocab given a vocab.json whose keys are in another order, spaced otherwise and ASCII-escaped: the
    dataset's vocab.json is that file byte for byte (its sha256 what the manifest records), and so is the
    copy in a run folder trained on it."""
    import hashlib

    from conftest import invoke
    from minigpt.cli import train_app

    (tmp_path / "a.txt").write_text("Caf\u00e9 abc abd\n" * 40)
    assert run_inprocess("--data-files", tmp_path / "a.txt", "--out", tmp_path / "a").code == 0
    given = tmp_path / "mine.json"
    given.write_text(json.dumps(json.loads((tmp_path / "a" / "vocab.json").read_text()), sort_keys=True, indent=4))
    assert given.read_bytes() != (tmp_path / "a" / "vocab.json").read_bytes()
    r = run_inprocess("--data-files", tmp_path / "a.txt", "--vocab", given, "--out", tmp_path / "b")
    assert r.code == 0, r.output
    assert (tmp_path / "b" / "vocab.json").read_bytes() == given.read_bytes()
    assert manifest(tmp_path / "b")["vocab_sha256"] == hashlib.sha256(given.read_bytes()).hexdigest()
    r = invoke(
        train_app,
        "--preset",
        "tiny",
        "--max-iters",
        2,
        "--eval-tokens",
        64,
        "--block-size",
        8,
        "--data",
        tmp_path / "b",
        "--out",
        tmp_path / "run",
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "vocab.json").read_bytes() == given.read_bytes()


def test_datasets_made_before_these_options_are_still_unchanged_on_a_rerun(tmp_path):
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(30)))
    args = ("--data-files", tmp_path / "a.jsonl", "--docs", 20, "--val-docs", 5, "--out", tmp_path / "ds")
    assert run_inprocess(*args).code == 0
    m = manifest(tmp_path / "ds")  # as an older minigpt wrote it: none of the newer fields
    for key in ("text_column", "split", "val_split", "revision", "doc_split", "val_fraction"):
        del m["source"][key]
    del m["build"]["vocab"], m["build"]["vocab_sha256"]
    (tmp_path / "ds" / "manifest.json").write_text(json.dumps(m))
    assert "nothing to do" in run_inprocess(*args).stdout


# ---- any hub dataset with a text column: a Parquet repo without C4's configs ----


def parquet_repo(root: Path, splits: dict[str, list[str]]) -> Path:
    """Laid out like a typical Parquet hub repo: data/{split}-00000-of-00001.parquet, a card with no configs."""
    (root / "data").mkdir(parents=True)
    (root / "README.md").write_text("---\nlicense: cdla-sharing-1.0\n---\n\n# Stories\n")
    for split, stories in splits.items():
        table = pa.table({"id": list(range(len(stories))), "story": stories})
        pq.write_table(table, root / "data" / f"{split}-00000-of-00001.parquet")
    return root


STORIES = [f"Once upon a time, story {i} \u00e9t\u00e9.\nThe end." for i in range(40)]
HELD_OUT = [f"Held-out story {i}." for i in range(8)]


def test_hub_parquet_dataset_with_text_column_split_and_revision(tmp_path):
    repo = parquet_repo(tmp_path / "repo", {"train": STORIES, "validation": HELD_OUT})
    args = ("--dataset", "acme/stories", "--text-column", "story", "--docs", 30, "--val-docs", 5)
    with FakeHub(repo, "acme/stories", data_substring=".parquet") as hub:
        env = hub_env(hub.url)
        r = run_subprocess(*args, "--out", tmp_path / "hub", env=env)
        assert r.code == 0, r.output
        pinned = run_subprocess(*args, "--revision", hub.sha, "--out", tmp_path / "pinned", env=env)
        bad_rev = run_subprocess(*args, "--revision", "no-such-branch", "--out", tmp_path / "x", env=env)
        bad_split = run_subprocess(*args, "--split", "test", "--out", tmp_path / "x", env=env)
        bad_col = run_subprocess("--dataset", "acme/stories", "--docs", 5, "--out", tmp_path / "x", env=env)
        sha = hub.sha
    out = tmp_path / "hub"
    assert decode(out, "train") == encoded(STORIES[:30], out)  # (a hub dataset: characters below 10 uses are <unk>)
    assert decode(out, "val") == encoded(HELD_OUT[:5], out)
    m = manifest(out)
    assert m["source_commit"] == sha and m["val_from"] == "val_split" and m["source"]["config"] is None
    assert f"hub commit {sha}" in r.stdout
    assert pinned.code == 0 and manifest(tmp_path / "pinned")["source"]["revision"] == sha
    assert files_of(tmp_path / "pinned").keys() == files_of(out).keys()
    assert_clean_error(bad_rev, "acme/stories has no revision 'no-such-branch'", "--revision", out=tmp_path / "x")
    assert_clean_error(bad_split, "no split 'test'", "train, validation", "--split", out=tmp_path / "x")
    assert_clean_error(bad_col, "no 'text' column", "id, story", "--text-column", out=tmp_path / "x")
    # the same repo as a local folder gives the same dataset (and the hub's absence costs nothing)
    r = run_inprocess(
        "--dataset", repo, "--text-column", "story", "--docs", 30, "--val-docs", 5, "--out", tmp_path / "local"
    )
    assert r.code == 0, r.output
    local, hub_files = files_of(tmp_path / "local"), files_of(out)
    assert all(local[k] == hub_files[k] for k in local if k != "manifest.json")
    # the hub is gone: the frozen slice serves a rebuild with other build options
    r = run_subprocess(*args, "--min-count", 1, "--out", out, env=env)
    assert r.code == 0 and "rebuilt from raw/" in r.stdout, r.output
    assert resolve_source("roneneldan/TinyStories").default_name() == "tinystories-3000"
    assert (
        resolve_source("Salesforce/wikitext", "wikitext-103-raw-v1", docs="all").default_name()
        == "wikitext-wikitext-103-raw-v1-all"
    )


def test_hub_dataset_without_validation_split(tmp_path):
    repo = parquet_repo(tmp_path / "repo", {"train": STORIES})
    with FakeHub(repo, "acme/stories", data_substring=".parquet") as hub:
        env = hub_env(hub.url)
        after = run_subprocess(
            "--dataset",
            "acme/stories",
            "--text-column",
            "story",
            "--docs",
            30,
            "--val-docs",
            4,
            "--out",
            tmp_path / "after",
            env=env,
        )
        every = run_subprocess(
            "--dataset", "acme/stories", "--text-column", "story", "--docs", "all", "--out", tmp_path / "all", env=env
        )
        missing = run_subprocess(
            "--dataset",
            "acme/stories",
            "--text-column",
            "story",
            "--val-split",
            "validation",
            "--out",
            tmp_path / "x",
            env=env,
        )
    assert after.code == 0, after.output
    assert decode(tmp_path / "after", "val") == encoded(STORIES[30:34], tmp_path / "after")
    assert manifest(tmp_path / "after")["val_from"] == "after_docs"
    assert every.code == 0, every.output
    whole = "".join(STORIES)
    cut = int(len(whole) * 0.9)
    assert decode(tmp_path / "all", "train").replace(EOT, "") == encoded([whole[:cut]], tmp_path / "all")[: -len(EOT)]
    assert decode(tmp_path / "all", "val").replace(EOT, "") == encoded([whole[cut:]], tmp_path / "all")[: -len(EOT)]
    assert manifest(tmp_path / "all")["val_from"] == "fraction"
    assert_clean_error(missing, "no split 'validation'", "splits: train", "--val-split", out=tmp_path / "x")
    assert "streaming train" not in missing.stderr  # found out before streaming anything


TESTS = [f"Test story {i}, kept apart." for i in range(6)]


def test_a_hub_test_split_is_kept_apart_and_rebuilt_offline(tmp_path):
    """--test-split through the fake hub (the real datasets path): the test split's first documents
    (N/10 by default), a split of its own in the manifest; a split that is not there, or that is train's
    or validation's, is one message before anything is streamed; a rebuild from raw/ keeps it."""
    repo = parquet_repo(tmp_path / "repo", {"train": STORIES, "validation": HELD_OUT, "test": TESTS})
    args = ("--dataset", "acme/stories", "--text-column", "story", "--docs", 30, "--val-docs", 5)
    with FakeHub(repo, "acme/stories", data_substring=".parquet") as hub:
        env = hub_env(hub.url)
        r = run_subprocess(*args, "--test-split", "test", "--out", tmp_path / "ds", env=env)
        every = run_subprocess(*args, "--test-split", "test", "--test-docs", "all", "--out", tmp_path / "all", env=env)
        missing = run_subprocess(*args, "--test-split", "tset", "--out", tmp_path / "x", env=env)
        rebuilt = run_subprocess(*args, "--test-split", "test", "--min-count", 1, "--out", tmp_path / "ds", env=env)
    assert r.code == 0, r.output
    out = tmp_path / "ds"
    assert decode(out, "test") == encoded(TESTS[:3], out) and decode(out, "val") == encoded(HELD_OUT[:5], out)
    m = manifest(out)
    assert (
        m["test_from"] == "test_split" and m["splits"]["test"]["docs"] == 3 and m["raw"]["test"] == "raw/test.parquet"
    )
    assert "test: the test split, kept apart" in r.stdout
    assert every.code == 0 and decode(tmp_path / "all", "test") == encoded(TESTS, tmp_path / "all")
    assert_clean_error(missing, "no split 'tset'", "train, validation, test", "--test-split", out=tmp_path / "x")
    assert "streaming train" not in missing.stderr
    assert rebuilt.code == 0 and "rebuilt from raw/" in rebuilt.stdout, rebuilt.output
    assert decode(out, "test") == encoded(TESTS[:3], out) and manifest(out)["min_count"] == 1
    for split, needle in (("validation", "validation comes from"), ("train", "train comes from")):
        bad = run_inprocess("--dataset", repo, "--text-column", "story", "--test-split", split, "--out", tmp_path / "x")
        assert_clean_error(bad, f"--test-split {split} is the split that {needle}", "kept apart", out=tmp_path / "x")
    changed = run_inprocess(*args[:1], repo, *args[2:], "--test-split", "test", "--test-docs", 2, "--out", out)
    assert_clean_error(changed, "made with other arguments", "test_docs was 3, now 2")


def test_test_docs_after_validation_and_test_files_of_their_own(tmp_path):
    docs = [f"doc {i}" for i in range(50)]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    r = run_inprocess("--data-files", path, "--docs", 30, "--val-docs", 5, "--test-docs", 10, "--out", tmp_path / "a")
    assert r.code == 0, r.output
    a = tmp_path / "a"
    assert decode(a, "val") == encoded(docs[30:35], a) and decode(a, "test") == encoded(docs[35:45], a)
    assert "test: the documents after the validation ones" in r.stdout
    short = run_inprocess(
        "--data-files", path, "--docs", 30, "--val-docs", 5, "--test-docs", 16, "--out", tmp_path / "x"
    )
    assert_clean_error(short, "has only 50 documents, but --test-docs 16 needs 1 more", out=tmp_path / "x")
    none_left = run_inprocess(
        "--data-files", path, "--docs", 45, "--val-docs", "all", "--test-docs", 1, "--out", tmp_path / "x"
    )
    assert_clean_error(none_left, "has only 50 documents, but --test-docs 1 needs 1 more", out=tmp_path / "x")
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps({"text": f"held {i}"}) + "\n" for i in range(4)))
    r = run_inprocess(
        "--data-files", path, "--val-data-files", path, "--test-data-files", held, "--out", tmp_path / "b"
    )
    assert r.code == 0, r.output
    assert decode(tmp_path / "b", "test") == encoded([f"held {i}" for i in range(4)], tmp_path / "b")
    r = run_inprocess("--data-files", path, "--test-data-files", path, "--out", tmp_path / "x")
    assert_clean_error(r, "--test-data-files and --data-files name the same files", out=tmp_path / "x")
    r = run_inprocess(
        "--data-files", tmp_path / "docs.jsonl", "--test-data-files", tmp_path / "*.jsonl", "--out", tmp_path / "x"
    )
    assert_clean_error(r, "--test-data-files and --data-files share 1 file(s)", "files of its own", out=tmp_path / "x")


def test_a_dataset_with_several_configs_needs_one_named(tmp_path):
    repo = tmp_path / "repo"
    for config in ("small", "large"):
        (repo / config).mkdir(parents=True)
        pq.write_table(pa.table({"text": STORIES}), repo / config / "train.parquet")
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: small\n  data_files: small/*.parquet\n"
        "- config_name: large\n  data_files: large/*.parquet\n---\n"
    )
    r = run_inprocess("--dataset", repo, "--docs", 10, "--out", tmp_path / "ds")
    assert_clean_error(r, "several configs", "small", "large", "--config", out=tmp_path / "ds")
    r = run_inprocess("--dataset", repo, "--config", "large", "--docs", 10, "--val-docs", 5, "--out", tmp_path / "ds")
    assert r.code == 0, r.output
    assert manifest(tmp_path / "ds")["val_from"] == "after_docs"


def test_a_hub_host_that_does_not_resolve_fails_at_once(tmp_path):
    r = run_subprocess("--docs", 10, "--out", tmp_path / "ds", env=hub_env("http://hub.invalid"))
    assert_clean_error(r, "hub.invalid does not resolve", "offline", "--data-files", out=tmp_path / "ds")
    assert "Retry" not in r.output and "trying again" not in r.output
    assert not (tmp_path / "ds").exists()


# ---- bad input ----


def test_bad_text_and_split_options(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("plenty of text here\n" * 5)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\u00e9 ok\n".encode("utf-8") + "na\u00efve\n".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    js = tmp_path / "a.jsonl"
    js.write_text(json.dumps({"text": "x"}) + "\n")
    out = tmp_path / "ds"
    cases = [
        (("--data-files", latin), [str(latin), "byte 11 (0xef) is not valid UTF-8", "iconv"]),
        (("--data-files", latin, "--doc-split", "line"), ["byte 11 (0xef)"]),
        (("--data-files", empty), ["has no documents"]),
        (("--data-files", good, "--val-fraction", 0.7), ["--val-fraction must be above 0 and at most 0.5"]),
        (("--data-files", good, "--val-fraction", 0), ["--val-fraction must be above 0"]),
        (("--data-files", good, "--val-fraction", 0.1, "--val-docs", 3), ["--val-fraction and --val-docs"]),
        (
            ("--data-files", good, "--val-fraction", 0.1, "--val-data-files", good),
            ["--val-fraction and --val-data-files"],
        ),
        (("--data-files", js, "--doc-split", "line"), ["--doc-split applies to plain text files"]),
        (
            ("--data-files", good, "--doc-split", "sentence"),
            ["--doc-split 'sentence' is not one of file, paragraph, line"],
        ),
        (("--data-files", good, "--revision", "main"), ["--revision applies to --dataset"]),
        (("--data-files", good, "--split", "test"), ["--split applies to --dataset"]),
        (("--dataset", tmp_path, "--revision", "main"), ["--revision applies to a hub dataset"]),
        (("--data-files", good, "--docs", "many"), ["--docs 'many' is not a number"]),
        (("--data-files", good, "--vocab", good), ["is not a minigpt vocabulary", "--vocab takes"]),
        (("--data-files", good, "--vocab", tmp_path), ["cannot read it"]),
        (("--data-files", good, "--vocab", tmp_path, "--min-count", 2), ["--vocab and --min-count/--max-vocab"]),
        (("--data-files", tmp_path / "short.txt"), ["matches no file"]),
        (("--data-files", good, "--test-split", "test"), ["--test-split applies to --dataset"]),
        (("--data-files", good, "--test-fraction", 0.6), ["--test-fraction must be above 0"]),
        (
            ("--data-files", good, "--val-fraction", 0.3, "--test-fraction", 0.3),
            ["--test-fraction must be above 0, and with --val-fraction at most 0.5 (got 0.3 and 0.3)"],
        ),
        (("--data-files", good, "--test-fraction", 0.1, "--test-docs", 3), ["--test-fraction and --test-docs"]),
        (("--data-files", good, "--test-fraction", 0.1, "--test-data-files", js), ["--test-fraction and --test-data"]),
        (("--dataset", tmp_path, "--test-split", "t", "--test-data-files", js), ["--test-data-files and --test-split"]),
        (("--data-files", good, "--docs", 3, "--test-docs", "all"), ["--test-docs all names no documents"]),
        (("--data-files", good, "--test-docs", 2), ["--test-docs 2 asks for the documents after the train ones"]),
        (("--data-files", good, "--test-docs", 0), ["--test-docs must be at least 1"]),
    ]
    (tmp_path / "v.json").write_text(
        json.dumps({"format": "minigpt-vocab", "version": 1, "itos": ["<eot>", "a"], "eot": 0, "unk": 1})
    )
    cases.append((("--data-files", good, "--vocab", tmp_path / "v.json"), ["special tokens are not at their ids"]))
    for args, needles in cases:
        assert_clean_error(run_inprocess(*args, "--out", out), *needles, out=out)
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("a")  # int(1 * 0.9) = 0 characters of train
    assert_clean_error(run_inprocess("--data-files", tiny, "--out", out), "too few to cut", out=out)
    four = tmp_path / "four.txt"
    four.write_text("abcd")  # validation's cut at int(4 * 0.8) = 3 and test's at int(4 * 0.9) = 3: test is empty
    r = run_inprocess("--data-files", four, "--val-fraction", 0.1, "--test-fraction", 0.1, "--out", out)
    assert_clean_error(r, "4 characters, too few to cut 0.1 for validation and 0.1 for test off it", out=out)
    assert not out.exists()
