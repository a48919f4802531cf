"""minigpt-prepare end to end on local sources: the dataset folder, its contents, reruns, failures."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from c4mirror import make_docs, read_jsonl_gz, write_c4_mirror
from conftest import run_inprocess, run_subprocess
from minigpt.errors import Interrupted
from minigpt.data.vocab import EOT, UNK, Vocab


def source_docs(mirror: Path, split: str) -> list[dict]:
    pattern = "c4-train.*" if split == "train" else "c4-validation.*"
    return [d for f in sorted((mirror / "en").glob(pattern)) for d in read_jsonl_gz(f)]


def shard_tokens(folder: Path, split: str) -> np.ndarray:
    m = json.loads((folder / "manifest.json").read_text())
    return np.concatenate(
        [np.memmap(folder / s["file"], dtype=m["dtype"], mode="r") for s in m["splits"][split]["shards"]]
    )


def expected_text(docs: list[dict], vocab: Vocab) -> str:
    known = set(vocab.itos[2:])
    return "".join("".join(c if c in known else UNK for c in d["text"]) + EOT for d in docs)


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_local_mirror_dataset_is_complete_and_decodes_to_the_source(mirror, tmp_path):
    out = tmp_path / "ds"
    r = run_inprocess("--dataset", mirror, "--docs", 100, "--val-docs", 15, "--min-count", 3, "--out", out)
    assert r.code == 0, r.output
    assert "built" in r.stdout and "unk" in r.stdout and "MB/s" in r.stdout
    m = json.loads((out / "manifest.json").read_text())
    vocab = Vocab.load(out / "vocab.json")
    assert m["dtype"] == "uint8" and m["vocab_size"] == len(vocab) <= 256
    assert (
        m["source"]["docs"] == 100 and m["source"]["val_docs"] == 15 and m["source"]["config"] is None
    )  # its one config, en
    assert m["vocab_sha256"] == vocab.sha256()
    train, val = source_docs(mirror, "train")[:100], source_docs(mirror, "validation")[:15]
    # <eot> after every document, <unk> exactly where a character is outside the vocabulary
    for split, docs in (("train", train), ("val", val)):
        tokens = shard_tokens(out, split)
        assert vocab.decode(tokens) == expected_text(docs, vocab)
        s = m["splits"][split]
        assert s["docs"] == len(docs) and s["tokens"] == tokens.size == s["chars"] + len(docs)
        assert s["chars"] == sum(len(d["text"]) for d in docs)
        assert s["unk"] == int(np.count_nonzero(tokens == vocab.unk))
        for sh in s["shards"]:
            assert (out / sh["file"]).stat().st_size == sh["tokens"]
    assert m["splits"]["train"]["unk"] > 0  # min-count 3 leaves some rare characters out
    # the vocabulary: characters of train counted, kept when frequent enough, specials first
    counts = {}
    for d in train:
        for c in d["text"]:
            counts[c] = counts.get(c, 0) + 1
    assert vocab.counts == counts
    assert vocab.itos[:2] == [EOT, UNK] and set(vocab.itos[2:]) == {c for c, n in counts.items() if n >= 3}
    # the frozen slice, verbatim, in parquet
    raw = pq.read_table(out / "raw" / "train.parquet")
    assert raw.column_names == ["text", "url", "timestamp"]
    assert raw.column("text").to_pylist() == [d["text"] for d in train]
    assert raw.column("url").to_pylist() == [d["url"] for d in train]
    assert pq.read_table(out / "raw" / "val.parquet").column("text").to_pylist() == [d["text"] for d in val]


def test_train_and_val_come_from_their_own_splits(mirror, tmp_path):
    out = tmp_path / "ds"
    assert run_inprocess("--dataset", mirror, "--docs", 30, "--val-docs", 10, "--out", out).code == 0
    train = set(pq.read_table(out / "raw" / "train.parquet").column("url").to_pylist())
    val = pq.read_table(out / "raw" / "val.parquet").column("url").to_pylist()
    assert not train & set(val)
    assert val == [d["url"] for d in source_docs(mirror, "validation")[:10]]


def test_data_files_alone_take_val_from_the_documents_after_n(mirror, tmp_path):
    out = tmp_path / "ds"
    r = run_inprocess(
        "--data-files", mirror / "en" / "c4-train.*.json.gz", "--docs", 70, "--val-docs", 20, "--out", out
    )
    assert r.code == 0, r.output
    docs = source_docs(mirror, "train")
    vocab = Vocab.load(out / "vocab.json")
    assert vocab.decode(shard_tokens(out, "train")) == expected_text(docs[:70], vocab)
    assert vocab.decode(shard_tokens(out, "val")) == expected_text(docs[70:90], vocab)
    m = json.loads((out / "manifest.json").read_text())
    assert m["val_from"] == "after_docs"
    assert m["source"]["data_files"] == str(mirror / "en" / "c4-train.*.json.gz")
    assert m["source_files"]["train"] == [str(p) for p in sorted((mirror / "en").glob("c4-train.*"))]


def test_all_local_forms_give_the_same_dataset(mirror, tmp_path):
    """A mirror folder, json.gz files, and parquet files of the same documents: identical shards."""
    args = ("--docs", 90, "--val-docs", 12, "--min-count", 10)  # (local files default to keeping every character)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert run_inprocess("--dataset", mirror, *args, "--out", a).code == 0
    assert (
        run_inprocess(
            "--data-files",
            mirror / "en" / "c4-train.*.json.gz",
            "--val-data-files",
            mirror / "en" / "c4-validation.*",
            *args,
            "--out",
            b,
        ).code
        == 0
    )
    pq_dir = tmp_path / "pq"
    pq_dir.mkdir()
    shutil.copy(a / "raw" / "train.parquet", pq_dir / "train.parquet")
    shutil.copy(a / "raw" / "val.parquet", pq_dir / "val.parquet")
    r = run_inprocess(
        "--data-files", pq_dir / "train.parquet", "--val-data-files", pq_dir / "val.parquet", *args, "--out", c
    )
    assert r.code == 0, r.output
    fa, fb, fc = files_of(a), files_of(b), files_of(c)
    for name in fa:
        if name != "manifest.json":
            assert fa[name] == fb[name] == fc[name], name
    ma, mb = (json.loads(f["manifest.json"]) for f in (fa, fb))
    assert ma["splits"] == mb["splits"] and ma["vocab_sha256"] == mb["vocab_sha256"]


def test_same_inputs_give_byte_identical_files(mirror, tmp_path):
    for name in ("one", "two"):
        assert (
            run_inprocess("--dataset", mirror, "--docs", 80, "--shard-tokens", 5000, "--out", tmp_path / name).code == 0
        )
    one, two = files_of(tmp_path / "one"), files_of(tmp_path / "two")
    assert one == two and len([n for n in one if n.startswith("train_")]) > 1


def test_shards_split_at_shard_tokens(mirror, tmp_path):
    out = tmp_path / "ds"
    assert run_inprocess("--dataset", mirror, "--docs", 100, "--shard-tokens", 4096, "--out", out).code == 0
    m = json.loads((out / "manifest.json").read_text())
    shards = m["splits"]["train"]["shards"]
    assert [s["file"] for s in shards] == [f"train_{i:05d}.bin" for i in range(len(shards))]
    assert all(s["tokens"] == 4096 for s in shards[:-1]) and 0 < shards[-1]["tokens"] <= 4096
    assert sum(s["tokens"] for s in shards) == m["splits"]["train"]["tokens"]


def test_uint16_shards_for_more_than_256_frequent_characters(tmp_path):
    cjk = "".join(chr(0x4E00 + i) for i in range(400))
    train = [make_docs(40, seed=5, extra_chars=cjk)]
    mirror = write_c4_mirror(tmp_path / "m", train, [make_docs(5, seed=6, extra_chars=cjk[:50])])
    out = tmp_path / "ds"
    r = run_inprocess("--dataset", mirror, "--docs", 40, "--val-docs", 5, "--min-count", 2, "--out", out)
    assert r.code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    vocab = Vocab.load(out / "vocab.json")
    assert m["dtype"] == "uint16" and len(vocab) > 256
    tokens = shard_tokens(out, "train")
    assert (out / "train_00000.bin").stat().st_size == 2 * tokens.size
    assert vocab.decode(tokens) == expected_text(source_docs(mirror, "train")[:40], vocab)


def test_max_vocab_caps_to_the_most_frequent(mirror, tmp_path):
    out = tmp_path / "ds"
    assert run_inprocess("--dataset", mirror, "--docs", 60, "--max-vocab", 12, "--out", out).code == 0
    vocab = Vocab.load(out / "vocab.json")
    ranked = sorted(vocab.counts, key=lambda c: (-vocab.counts[c], ord(c)))
    assert len(vocab) == 12 and set(vocab.itos[2:]) == set(ranked[:10])


def test_rerun_is_a_noop_and_changed_build_options_rebuild_from_raw(mirror, tmp_path):
    out = tmp_path / "ds"
    args = ("--dataset", mirror, "--docs", 60, "--val-docs", 8, "--out", out)
    assert run_inprocess(*args).code == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    r = run_inprocess(*args)
    assert r.code == 0 and "nothing to do" in r.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    # another --min-count: the vocabulary and shards are rebuilt from raw/, even with the source gone
    shutil.rmtree(mirror)
    r = run_inprocess(*args, "--min-count", 40)
    assert r.code == 0 and "rebuilt from raw/" in r.stdout, r.output
    vocab = Vocab.load(out / "vocab.json")
    assert vocab.min_count == 40 and all(vocab.counts[c] >= 40 for c in vocab.itos[2:])
    assert json.loads((out / "manifest.json").read_text())["build"]["min_count"] == 40


def test_damaged_shard_is_rebuilt_from_raw(mirror, tmp_path):
    out = tmp_path / "ds"
    args = ("--dataset", mirror, "--docs", 60, "--out", out)
    assert run_inprocess(*args).code == 0
    good = (out / "train_00000.bin").read_bytes()
    (out / "train_00000.bin").write_bytes(good[:100])
    r = run_inprocess(*args)
    assert r.code == 0 and "rebuilt" in r.stdout
    assert (out / "train_00000.bin").read_bytes() == good


def test_default_out_is_under_data_named_from_source_and_n(mirror, tmp_path):
    r = run_inprocess("--dataset", mirror, "--docs", 25)
    assert r.code == 0, r.output
    assert (tmp_path / "data" / "mirror-25" / "manifest.json").is_file()
    m = json.loads((tmp_path / "data" / "mirror-25" / "manifest.json").read_text())
    assert m["source"]["val_docs"] == 2  # N/10
    assert run_inprocess("--dataset", mirror, "--config", "en", "--docs", 25).code == 0
    assert (tmp_path / "data" / "mirror-en-25" / "manifest.json").is_file()
    (tmp_path / "input.txt").write_text("To be, or not to be, that is the question.\n" * 20)
    assert run_inprocess("--data-files", tmp_path / "input.txt").code == 0
    assert (tmp_path / "data" / "input-all" / "manifest.json").is_file()


# ---- bad input: one clear message, a non-zero exit, no traceback, nothing written ----


def assert_clean_error(r, *needles, out: Path | None = None):
    assert r.code != 0
    assert "Traceback" not in r.output
    assert r.stderr.count("error:") == 1, r.output
    for needle in needles:
        assert needle in r.output, r.output
    if out is not None:
        assert not (out / "manifest.json").exists()
        assert not list(out.parent.glob(f".{out.name}.tmp-*"))


@pytest.mark.parametrize("flag", ["--docs", "--val-docs"])
def test_counts_below_one(mirror, tmp_path, flag):
    r = run_inprocess("--dataset", mirror, flag, 0, "--out", tmp_path / "ds")
    assert_clean_error(r, f"{flag} must be at least 1", out=tmp_path / "ds")


def test_fewer_documents_than_asked_says_how_many(mirror, tmp_path):
    r = run_inprocess("--dataset", mirror, "--docs", 500, "--out", tmp_path / "ds")
    assert_clean_error(r, "has only 120 documents", "--docs 500", out=tmp_path / "ds")
    r = run_inprocess("--dataset", mirror, "--docs", 10, "--val-docs", 21, "--out", tmp_path / "ds")
    assert_clean_error(r, "has only 20 documents", out=tmp_path / "ds")


def test_glob_matching_nothing(tmp_path):
    r = run_inprocess("--data-files", tmp_path / "nope" / "*.json.gz", "--out", tmp_path / "ds")
    assert_clean_error(r, "matches no file", "HINT")


def test_files_without_text_column(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text("\n".join(json.dumps({"body": f"doc {i}", "url": "u"}) for i in range(5)) + "\n")
    r = run_inprocess("--data-files", f, "--docs", 3, "--val-docs", 1, "--out", tmp_path / "ds")
    assert_clean_error(r, "no 'text' column", "body", out=tmp_path / "ds")


def test_file_of_another_format(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("hello")
    assert_clean_error(run_inprocess("--data-files", f), "not a file minigpt-prepare reads", ".txt")


def test_corrupt_gzip(mirror, tmp_path):
    f = mirror / "en" / "c4-train.00001-of-01024.json.gz"
    f.write_bytes(f.read_bytes()[:200])
    r = run_inprocess("--dataset", mirror, "--docs", 100, "--out", tmp_path / "ds")
    assert_clean_error(r, "cannot read", out=tmp_path / "ds")


def test_missing_dataset_folder_and_unknown_config(mirror, tmp_path):
    assert_clean_error(run_inprocess("--dataset", tmp_path / "missing"), "no such folder")
    r = run_inprocess("--dataset", mirror, "--config", "realnewslike", "--out", tmp_path / "ds")
    assert_clean_error(r, "realnewslike", "--config", out=tmp_path / "ds")


def test_existing_dataset_made_with_other_arguments(mirror, tmp_path):
    out = tmp_path / "ds"
    assert run_inprocess("--dataset", mirror, "--docs", 30, "--out", out).code == 0
    before = files_of(out)
    r = run_inprocess("--dataset", mirror, "--docs", 40, "--out", out)
    assert_clean_error(r, "other arguments", "docs was 30, now 40", "--force")
    assert files_of(out) == before
    r = run_inprocess("--dataset", mirror, "--docs", 40, "--out", out, "--force")
    assert r.code == 0 and json.loads((out / "manifest.json").read_text())["source"]["docs"] == 40


def test_folder_that_is_not_a_dataset_is_left_alone(mirror, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    for extra in ((), ("--force",)):
        assert_clean_error(run_inprocess("--dataset", mirror, "--out", out, *extra), "not a minigpt dataset")
    assert (out / "notes.txt").read_text() == "keep me"


def test_output_folder_that_cannot_be_written(mirror, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_inprocess("--dataset", mirror, "--docs", 10, "--out", blocker / "ds")
    assert_clean_error(r, "cannot write", "--out")


def test_full_disk_mid_write_leaves_nothing(mirror, tmp_path, monkeypatch):
    import minigpt.data.shards

    def full(self, tokens):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.folder / "train_00000.bin"))

    monkeypatch.setattr(minigpt.data.shards.ShardWriter, "write", full)
    out = tmp_path / "ds"
    r = run_inprocess("--dataset", mirror, "--docs", 10, "--out", out)
    assert_clean_error(r, "No space left on device", "twice its text", out=out)
    assert not out.exists() and os.listdir(tmp_path) == ["mirror"]


def test_ctrl_c_mid_run_leaves_nothing_and_keeps_the_old_dataset(mirror, tmp_path, monkeypatch):
    import minigpt.data.shards

    out = tmp_path / "ds"
    assert run_inprocess("--dataset", mirror, "--docs", 20, "--out", out).code == 0
    before = files_of(out)

    def interrupt(self, tokens):
        raise Interrupted(signal.SIGINT)  # what the CLI's Ctrl-C handler raises

    monkeypatch.setattr(minigpt.data.shards.ShardWriter, "write", interrupt)
    with pytest.raises(Interrupted):  # the CLI turns it into exit 130 (a real signal is tested with the hub)
        run_inprocess("--dataset", mirror, "--docs", 20, "--min-count", 2, "--out", out)
    assert files_of(out) == before
    assert sorted(os.listdir(tmp_path)) == ["ds", "mirror"]


def test_console_script_and_prepare_py_agree(mirror, tmp_path):
    script = shutil.which("minigpt-prepare", path=str(Path(sys.executable).parent))
    assert script, "pip install -e . puts minigpt-prepare beside python"
    a = run_subprocess("--dataset", mirror, "--docs", 20, "--out", tmp_path / "a", script=[script])
    b = run_subprocess("--dataset", mirror, "--docs", 20, "--out", tmp_path / "b")
    assert a.code == b.code == 0, a.output + b.output
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")
    r = run_subprocess("--docs", 0, script=[script])
    assert r.code == 2 and "Traceback" not in r.stderr and "--docs must be at least 1" in r.stderr


def test_mirror_without_features_block_gives_the_same_slice(tmp_path):
    """Without dataset_info, pyarrow reads timestamps as datetimes; the slice still stores the hub's strings."""
    train, val = [make_docs(30, seed=8)], [make_docs(5, seed=9)]
    a = write_c4_mirror(tmp_path / "a", train, val)
    b = write_c4_mirror(tmp_path / "b", train, val, features=False)
    for m in (a, b):
        assert (
            run_inprocess("--dataset", m, "--docs", 30, "--val-docs", 5, "--out", tmp_path / f"ds-{m.name}").code == 0
        )
    ra, rb = (pq.read_table(tmp_path / f"ds-{n}" / "raw" / "train.parquet") for n in "ab")
    assert ra.equals(rb) and ra.column("timestamp").to_pylist()[0] == train[0][0]["timestamp"].replace("T", " ")[:-1]


@pytest.mark.parametrize(
    "lines,needle",
    [
        (['{"text": 5}', '{"text": 6}'], "'text' must be a string"),
        (['{"text": "a"}', '{"text": 5}'], "'text' must be a string"),
        (['{"text": ["a", "b"]}'], "'text' must be a string"),
        ([], "has no documents"),
    ],
)
def test_text_that_is_not_a_string_or_no_documents(tmp_path, lines, needle):
    f = tmp_path / "x.json"
    f.write_text("".join(line + "\n" for line in lines))
    r = run_inprocess("--data-files", f, "--docs", 1, "--val-docs", 1, "--out", tmp_path / "ds")
    assert_clean_error(r, needle, out=tmp_path / "ds")


def test_out_dot_and_config_with_data_files(mirror, tmp_path):
    here = tmp_path / "here"
    here.mkdir()
    os.chdir(here)
    assert run_inprocess("--dataset", mirror, "--docs", 10, "--out", ".").code == 0
    assert (here / "manifest.json").is_file() and sorted(os.listdir(tmp_path)) == ["here", "mirror"]
    r = run_inprocess("--data-files", mirror / "en" / "c4-train.*", "--config", "en", "--out", tmp_path / "x")
    assert_clean_error(r, "--config applies to --dataset")


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_kill_between_the_two_renames_loses_nothing(mirror, tmp_path):
    out = tmp_path / "ds"
    args = ("--dataset", mirror, "--docs", 20, "--out", out)
    assert run_inprocess(*args).code == 0
    before = files_of(out)
    os.replace(out, tmp_path / f".ds.old-{dead_pid()}")  # what a kill right after the first rename leaves
    r = run_inprocess(*args)
    assert r.code == 0 and "nothing to do" in r.stdout, r.output
    assert files_of(out) == before and sorted(os.listdir(tmp_path)) == ["ds", "mirror"]


def test_tampered_vocab_or_manifest(mirror, tmp_path):
    out = tmp_path / "ds"
    args = ("--dataset", mirror, "--docs", 20, "--out", out)
    assert run_inprocess(*args).code == 0
    good = (out / "vocab.json").read_bytes()
    (out / "vocab.json").write_bytes(good + b" ")
    r = run_inprocess(*args)
    assert r.code == 0 and "rebuilt" in r.stdout and (out / "vocab.json").read_bytes() == good
    m = json.loads((out / "manifest.json").read_text())
    del m["build"]
    (out / "manifest.json").write_text(json.dumps(m))
    assert_clean_error(run_inprocess(*args), "not a manifest this version can read", "--force")
    assert run_inprocess(*args, "--force").code == 0 and (out / "vocab.json").read_bytes() == good
