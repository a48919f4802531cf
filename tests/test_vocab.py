"""The vectorised character code: UTF-8 bytes to code points, counts, encoding with <eot> and <unk>."""

import collections
import random

import numpy as np
import pyarrow as pa
import pytest

from minigpt.errors import UserError
from minigpt.data.vocab import EOT, UNK, CharCounter, Vocab, utf8_bytes

# 1-, 2-, 3- and 4-byte UTF-8 characters, as web text has them
ALPHABET = "abc XYZ\n\t09.,!" + "éüßñ€£©°–—“”…" + "日本語한국어Ωπ" + "😀🎉𝔸"


def random_texts(n, seed, alphabet=ALPHABET, max_len=300):
    rng = random.Random(seed)
    return [("".join(rng.choice(alphabet) for _ in range(rng.randint(0, max_len)))) for _ in range(n)]


def full_vocab(texts):
    return Vocab.build(collections.Counter(ord(c) for t in texts for c in t), min_count=1, max_vocab=None)


@pytest.mark.parametrize("seed", range(5))
def test_encode_matches_python_on_mixed_utf8(seed):
    texts = random_texts(50, seed)
    v = full_vocab(texts)
    tokens, unk = v.encode_docs(pa.array(texts))
    assert unk == 0 and tokens.tolist() == [t for text in texts for t in v.encode(text) + [v.eot]]
    assert v.decode(tokens) == "".join(t + EOT for t in texts)


def test_encode_on_a_slice_and_on_ascii_only_text():
    texts = ["héllo", "plain ascii", "wörld 😀", ""]
    v = full_vocab(texts + ["abcde"])
    tokens, _ = v.encode_docs(pa.array(texts).slice(1, 3))
    assert v.decode(tokens) == f"plain ascii{EOT}wörld 😀{EOT}{EOT}"
    tokens, _ = v.encode_docs(pa.array(["abc", "", "de"]))
    assert v.decode(tokens) == f"abc{EOT}{EOT}de{EOT}"


def test_counter_matches_collections_counter():
    texts = random_texts(200, 7)
    counter = CharCounter()
    for i in range(0, 200, 64):  # several batches accumulate
        counter.update(utf8_bytes(pa.array(texts[i : i + 64])))
    expected = collections.Counter("".join(texts))
    assert counter.counts() == {ord(c): n for c, n in expected.items()}


def test_build_min_count_and_max_vocab():
    counts = {ord("a"): 100, ord("b"): 50, ord("c"): 50, ord("é"): 3, ord("日"): 1}
    v = Vocab.build(counts, min_count=3, max_vocab=None)
    assert v.itos == [EOT, UNK, "a", "b", "c", "é"] and v.eot == 0 and v.unk == 1
    capped = Vocab.build(counts, min_count=1, max_vocab=4)  # 2 specials + the 2 most frequent (tie -> code point)
    assert capped.itos == [EOT, UNK, "a", "b"]
    assert v.counts == {"a": 100, "b": 50, "c": 50, "é": 3, "日": 1}  # every train character, kept or not


def test_encode_docs_places_eot_and_unk():
    v = Vocab.build({ord(c): 10 for c in "abé "}, min_count=1, max_vocab=None)
    docs = ["ab é", "", "a日b😀"]
    tokens, unk = v.encode_docs(pa.array(docs))
    assert v.decode(tokens) == "ab é<eot><eot>a<unk>b<unk><eot>"
    assert unk == 2 and tokens.dtype == np.uint8


def test_uint16_when_over_256_entries():
    counts = {0x4E00 + i: 5 for i in range(300)}
    v = Vocab.build(counts, min_count=1, max_vocab=None)
    assert len(v) == 302 and v.dtype == np.uint16
    text = "".join(chr(0x4E00 + i) for i in range(0, 300, 7))
    tokens, unk = v.encode_docs(pa.array([text]))
    assert tokens.dtype == np.uint16 and unk == 0 and v.decode(tokens) == text + EOT


def test_vocab_over_uint16_is_refused():
    counts = {0x10000 + i: 1 for i in range(65_535)}
    with pytest.raises(UserError, match="65,537 entries"):
        Vocab.build(counts, min_count=1, max_vocab=None)


def test_vocab_json_roundtrip(tmp_path):
    v = Vocab.build({ord(c): n for c, n in zip("ab\n<", (5, 4, 3, 2))}, min_count=1, max_vocab=None)
    (tmp_path / "vocab.json").write_bytes(v.to_json())
    w = Vocab.load(tmp_path / "vocab.json")
    assert w.itos == v.itos and w.counts == v.counts and w.to_json() == v.to_json()
