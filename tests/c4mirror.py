"""Build tiny local folders laid out like the Hugging Face hub repo ``allenai/c4``.

Test-support module (stdlib only). ``write_c4_mirror`` writes::

    root/README.md                                  YAML front matter: dataset_info + configs for "en"
    root/en/c4-train.00000-of-01024.json.gz         one file per entry of ``train_files``
    root/en/c4-validation.00000-of-00008.json.gz    one file per entry of ``val_files``

Each data file is gzip'd JSON Lines of ``{"text", "timestamp", "url"}`` records, exactly as on the
hub. ``datasets.load_dataset(str(root), "en", split=..., streaming=True)`` reads it like the hub repo
(rows in file-name order, then line order); ``tests/fakehub.py`` serves it as the real hub id.

``make_docs`` produces small, deterministic, English-ish documents with some non-ASCII text.
"""

from __future__ import annotations

import gzip
import json
import pathlib
import random

from minigpt.data.stream import mirror_readme

__all__ = ["write_c4_mirror", "make_docs", "read_jsonl_gz", "README_FEATURES", "README_MINIMAL"]

# With the features block all three columns are strings, as on the hub (note: the hub path and the
# local path both then yield timestamps as '2019-04-25 12:57:54', not the original '2019-04-25T12:57:54Z').
README_FEATURES = mirror_readme("C4 (test mirror)")
README_MINIMAL = mirror_readme("C4 (test mirror)", features=False)


def _write_jsonl_gz(path: pathlib.Path, docs: list[dict]) -> None:
    """Write records as gzip'd JSON Lines, byte-for-byte deterministic (mtime=0, no file name)."""
    lines = []
    for d in docs:
        rec = {"text": d["text"], "timestamp": d["timestamp"], "url": d["url"]}  # hub key order
        lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
    data = "".join(lines).encode("utf-8")
    with open(path, "wb") as raw:
        # filename="" keeps the (temp) path out of the gzip header; mtime=0 fixes the timestamp.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            gz.write(data)


def read_jsonl_gz(path: pathlib.Path) -> list[dict]:
    """Read back one mirror data file (handy for computing expected rows in tests)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_c4_mirror(
    root: pathlib.Path,
    train_files: list[list[dict]],
    val_files: list[list[dict]],
    *,
    features: bool = True,
) -> pathlib.Path:
    """Write a C4-like mirror under ``root`` and return ``root``.

    ``train_files[i]`` becomes ``en/c4-train.{i:05d}-of-01024.json.gz`` and ``val_files[i]``
    ``en/c4-validation.{i:05d}-of-00008.json.gz``. Docs are dicts with text/timestamp/url.
    ``features=False`` writes the minimal README (configs only, no dataset_info).
    Pitfall: the README declares a validation split, so pass at least one val file, otherwise
    datasets fails with "Couldn't infer the same data file format for all splits".
    """
    if len(train_files) > 1024 or len(val_files) > 8:
        raise ValueError("C4 naming allows at most 1024 train files and 8 validation files")
    root = pathlib.Path(root)
    (root / "en").mkdir(parents=True, exist_ok=True)
    readme = README_FEATURES if features else README_MINIMAL
    (root / "README.md").write_text(readme, encoding="utf-8")
    for i, docs in enumerate(train_files):
        _write_jsonl_gz(root / "en" / f"c4-train.{i:05d}-of-01024.json.gz", docs)
    for i, docs in enumerate(val_files):
        _write_jsonl_gz(root / "en" / f"c4-validation.{i:05d}-of-00008.json.gz", docs)
    return root


# --------------------------------------------------------------------------- synthetic documents

_WORDS = (
    "the of and to a in is it that for on was with as be at by this have from or one had but not "
    "what all were when we there can an your which their said if do will each about how up out them "
    "then she many some so these would other into has more her two like him see time could no make "
    "than first been its who now people my made over did down only way find use may water long little "
    "very after words called just where most know get through back much before go good new write our "
    "used me man too any day same right look think also around another came come work three word must "
    "because does part even place well such here take why things help put years different away again "
    "off went old number great tell men say small every found still between name should home big give "
    "air line set own under read last never us left end along while might next sound below saw something "
    "garden recipe weather holiday software update market river museum bicycle coffee library station"
).split()

# Non-ASCII fragments, cycled deterministically so that any ~30 consecutive docs contain them all.
_SPECIAL = (
    "We met at the café near the station.",
    "“Honestly,” she said, “it was the best résumé I have read.”",
    "The museum was closed — again — for renovation.",
    "Herr Müller found the über-long manual rather naïve.",
    "The exhibition on 日本 (Japan) opens in spring.",
    "Prices rose by 5 % in Zürich, to 12 € per ticket.",
    "The façade of the old hotel was painted in crème.",
    "Teams from São Paulo and Kraków joined the event…",
    "He ordered a jalapeño piñata for the party – twice.",
    "Read more at the “Frequently Asked Questions” page ’til Friday.",
)


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 13))]
    if rng.random() < 0.15:
        words.insert(rng.randrange(len(words)), str(rng.randint(2, 2025)))
    sent = " ".join(words)
    return sent[0].upper() + sent[1:] + rng.choice(".......?!")


def make_docs(n: int, seed: int, start: int = 0, extra_chars: str = "") -> list[dict]:
    """Return ``n`` deterministic C4-like docs numbered ``start .. start+n-1``.

    Doc ``k`` depends only on ``(seed, k)``, so ``make_docs(5, s, start=10)`` equals
    ``make_docs(15, s)[10:]`` except for ``extra_chars``. Each doc has 1-3 paragraphs of a few
    sentences (paragraphs joined by "\\n", as in C4); every third doc carries a non-ASCII sentence
    (é, “ ”, —, ü, 日本, €, …). ``extra_chars`` (if given) is embedded in the first returned doc and
    in every doc with ``k % 5 == 0``. url is ``https://example.com/doc{k}``; timestamp looks like
    ``2019-04-25T12:57:54Z``. Average text length is ~300 chars (~3,400 docs per MB of JSONL).
    """
    docs = []
    for i in range(n):
        k = start + i
        rng = random.Random(seed * 1_000_003 + k)
        paragraphs = [
            " ".join(_sentence(rng) for _ in range(rng.randint(1, 3))) for _ in range(rng.choice((1, 1, 2, 3)))
        ]
        if k % 3 == 0:
            paragraphs.insert(rng.randrange(len(paragraphs) + 1), _SPECIAL[(k // 3) % len(_SPECIAL)])
        if extra_chars and (i == 0 or k % 5 == 0):
            paragraphs.append(f"Rare symbols: {extra_chars} (end).")
        ts = "2019-04-{:02d}T{:02d}:{:02d}:{:02d}Z".format(
            rng.randint(18, 26), rng.randrange(24), rng.randrange(60), rng.randrange(60)
        )
        docs.append({"text": "\n".join(paragraphs), "timestamp": ts, "url": f"https://example.com/doc{k}"})
    return docs
