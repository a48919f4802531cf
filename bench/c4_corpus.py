#!/usr/bin/env python3
"""Build a local corpus laid out like the hub repo ``allenai/c4`` (config ``en``) for benchmarks.

The text is resampled from real English sentences found on this machine (Python stdlib docstrings and
pydoc topics, GNU info manuals, /usr/share/common-licenses, /usr/share/doc READMEs/NEWS/changelogs/...),
mixed with web-style sentences (prices, dates, URLs, phones, foreign runs, emoji) and typographic variants
(curly quotes, dashes, NBSP, accented words) so the character mix looks like web text.
Nothing is downloaded.  Output is deterministic for a given seed and set of source files; the stamp records
a sha256 of the source sentences.  ``python bench/c4_corpus.py OUT --text-mb 200 [--seed 0]``.
"""

from __future__ import annotations

import argparse
import ast
import collections
import contextlib
import gzip
import hashlib
import html
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import struct
import sys
import sysconfig
import time
import zlib
from pathlib import Path

import numpy as np

from minigpt.data.stream import mirror_readme

VERSION = 1
STAMP = "c4_corpus_stamp.json"
DOCS_PER_FILE = {"train": 356_317, "validation": 45_576}  # 364,868,892/1024 and 364,608/8
N_FILES = {"train": 1024, "validation": 8}
CHUNK_DOCS = 1024
README = mirror_readme("Synthetic C4-shaped corpus (allenai/c4 layout), made by bench/c4_corpus.py for benchmarking.")

# ----------------------------------------------------------------------------- real English sentences
_PARA = re.compile(r"\n[ \t]*\n")
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\u201c\"(])|\s[*+-]\s+(?=[A-Z])")
_OK = re.compile(r"[A-Z][^_{}<>=|\\`*#~^@\[\]$%]{28,318}[a-z0-9)\"\u201d][.!?][\"\u201d)]?")
_CODEY = re.compile(
    r"\w\.[a-zA-Z]{2,}|\(\)|--|::|\.\.|\b(?:self|None|True|False|def|the the)\b|\w\(|"
    r"[A-Z]{2,}[a-z]|https?:"
)
_NONALPHA, _UPPER, _TAG = re.compile(r"[^A-Za-z]+"), re.compile(r"[A-Z]"), re.compile(r"<[^>]*>")
_DOC_KINDS = ("readme", "news", "copyright", "changelog", "faq", "authors", "thanks", "history")


def _sentences(text: str) -> list[str]:
    """Prose-looking sentences of ``text``; code, bullets-only lines, URLs and SHOUTING are dropped."""
    out = []
    for para in _PARA.split(text):
        for s in _SPLIT.split(" ".join(para.split()).lstrip("*+- ")):
            if not _OK.fullmatch(s) or _CODEY.search(s) or s.count(" ") < 5:
                continue
            letters = len(_NONALPHA.sub("", s))
            if letters >= 0.78 * (len(s) - s.count(" ")) and len(_UPPER.findall(s)) <= 0.15 * letters:
                out.append(s)
    return out


def _source_files() -> list[Path]:
    std = Path(sysconfig.get_paths()["stdlib"])
    files = [
        p
        for p in sorted(std.rglob("*.py"))
        if not {"site-packages", "dist-packages", "test", "tests"} & set(p.relative_to(std).parts)
    ]
    files += sorted(std.glob("idlelib/*.txt")) + [std / "LICENSE.txt"]
    for d in ("/usr/share/common-licenses", "/usr/share/info"):
        files += [p for p in sorted(Path(d).glob("*")) if p.is_file() and not p.name.endswith(".png")]
    for p in sorted(Path("/usr/share/doc").rglob("*")):
        n = p.name.lower()
        if (
            (n.startswith(_DOC_KINDS) or n.endswith((".md", ".txt", ".rst", ".html", ".md.gz", ".txt.gz", ".html.gz")))
            and p.is_file()
            and not p.is_symlink()
        ):
            files.append(p)
    return files


def _file_sentences(p: Path) -> list[str]:
    try:
        raw = p.read_bytes()
        text = (gzip.decompress(raw) if p.name.endswith(".gz") else raw).decode("utf-8", "replace")
    except (OSError, EOFError, zlib.error):
        return []
    if p.name == "topics.py":  # pydoc reference manual: a dict literal of escaped strings
        text = "\n\n".join(ast.literal_eval(text.split("topics = ", 1)[1]).values())
    elif p.suffix == ".py":
        text = "\n\n".join(a or b for a, b in re.findall(r'"""(.*?)"""|\'\'\'(.*?)\'\'\'', text, re.S))
    elif ".htm" in p.name:
        text = html.unescape(_TAG.sub(" ", text[:300_000].replace("<p>", "\n\n")))
    if "/usr/share/info/" not in str(p):
        text = text[: 20_000 if p.name.lower().startswith("changelog") else 100_000]
    return _sentences(text)


def gather_sentences(processes: int = 2) -> list[str]:
    """Deduplicated real English sentences in a deterministic (sorted-source) order."""
    files = _source_files()
    with _pool(processes) as pool:
        per_file = pool.map(_file_sentences, files, chunksize=8) if pool else map(_file_sentences, files)
        return list(dict.fromkeys(s for ss in per_file for s in ss))


# ----------------------------------------------------------------------------- web-style material
_ACCENTED = (
    "café cafés naïve résumé façade fiancée cliché soufflé rosé protégé jalapeño piñata déjà vu über "
    "doppelgänger crème brûlée entrée décor señor mañana São Paulo Zürich Montréal Kraków München Malmö "
    "Reykjavík Córdoba Düsseldorf Besançon Łódź İstanbul Gdańsk Dvořák Gödel Erdős Ångström Björk "
    "Beyoncé Pokémon Škoda Citroën Nestlé Häagen-Dazs El Niño Curaçao Québec Bogotá Medellín Cancún "
    "Tromsø Göteborg Genève Nîmes Sèvres Ålesund Plzeň Brașov Timișoara Poznań Füssen Köln"
).split()
_FIRST = (
    "James Mary John Linda Michael Sarah David Emma Chris Laura Daniel Anna Mark Lisa Paul Karen Kevin "
    "Jessica Brian Amy José Zoë Chloé Renée André Søren Björn François Łukasz Jürgen Noémie Raúl Siân "
    "Ngozi Priya Wei Yuki Olga Dmitri Ahmed Fatima"
).split()
_LAST = (
    "Smith Johnson Williams Brown Jones Miller Davis Wilson Taylor Clark Lewis Walker Hall Young King "
    "Wright Scott Green Baker Adams Müller García Núñez Øster Nowak Kowalski Dubois Lefèvre Bianchi "
    "O’Brien Nakamura Chen Kim Ivanova Petrović Şahin Andersson"
).split()
_PHRASES = (
    "Привет, мир Спасибо большое Добро пожаловать Ελληνικά Καλημέρα σας Ευχαριστώ 日本語 ありがとう "
    "ございます 東京都 中文 北京 上海 你好 謝謝 한국어 감사합니다 서울 العربية شكرا עברית תודה हिन्दी "
    "नमस्ते ภาษาไทย ขอบคุณ Tiếng Việt Cảm ơn Türkçe Teşekkürler Čeština Děkuji Polski Dziękuję "
    "Español Français Deutsch Português Русский Українська Magyar Română Svenska"
).split()
_SYMBOLS = "©®™€£¥°±×÷½¼¾•·→←↑↓✓✔★☆♥♦►▼…–—‘’“”«»§¶†‰′″≥≤≠≈∞µ¢¹²³ºª¿¡"
_TEMPLATES = (
    "Posted by {name} on {date} at {time}.",
    "Call us today at {phone} or email {email} for a free quote!",
    "Prices start at {price} per night, including breakfast and free Wi-Fi.",
    "Read more at {url}.",
    "Free shipping on all orders over {price}!",
    "The {W} {W}{sym} is available in {n} colours for {price}.",
    "Copyright © {year} {W} {W} Ltd. All rights reserved.",
    "Last updated: {date}.",
    "Temperatures will reach {temp} on {day}, with a {pct} chance of rain.",
    "Our office in {city} is open Monday–Friday, {time} to {time}.",
    "Rated {n}.{d} out of 5 by {n} customers.",
    "{name} said the project would cost about {price} million and take {n} years.",
    "The original title was “{foreign}” ({lang} for “{w} {w}”).",
    "Save {pct} this weekend only {emoji}",
    "Dimensions: {n} × {n} × {n} cm; weight {n}.{d} kg.",
    "{name} was born in {city} on {date}.",
    "Tickets cost {price} for adults and {price} for children under {n}.",
    "I love this {w} so much!!! {emoji}",
    "Languages: English · {lang} · {lang} · {foreign}.",
    "Use code {CODE} at checkout to save {pct}.",
    "Ingredients: 2 cups flour, ½ tsp salt, 1¼ cups water and {n} tbsp olive oil.",
    "The {acc} on {W} Street serves great coffee for {price}.",
    "See {url} or call {phone} for details.",
    "On {date}, {name} from {city} wrote: “The {w} was {w}, but the {w} was even better.”",
    "{W} {W} – {W} {W} {sym} {year}.",
    "Q: How long does the {w} last? A: About {n} hours at {temp}.",
    "It was {temp} outside and {name} was wearing a {acc} jacket… again.",
    "Thanks, {name}! {emoji}{emoji}",
    "Version {n}.{d}.{n} was released on {date} with {n} bug fixes.",
    "Order by {time} for next-day delivery.",
    "From {price} (was {price}), a saving of {pct}.",
    "Tags: {w}, {w}, {foreign}, {W} {W}.",
    "{W} ({foreign}) is one of the most popular {w} spots in {city}.",
    "Size: {n}{sym}{n} mm {sym} {W}.",
    "Follow {name} on Instagram and Twitter @{w}{n}.",
)
_LANGS = ("Japanese", "Chinese", "Russian", "Greek", "Korean", "Arabic", "Hindi", "German", "French", "Polish")
_TLDS = (".com",) * 6 + (".org", ".net", ".co.uk", ".de", ".com.au", ".info", ".io", ".ca", ".blog")
_MONTHS = "January February March April May June July August September October November December".split()
_DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
# long-tail code point tables in a fixed order (independent of the corpus seed)
_CJK = [chr(c) for c in random.Random(1).sample(range(0x4E00, 0x9FA0), 8000)]
_HANGUL = [chr(c) for c in random.Random(2).sample(range(0xAC00, 0xD7A0), 3000)]
_RARE = [
    chr(c)
    for c in random.Random(3).sample(
        [
            *range(0x100, 0x250),
            *range(0x370, 0x3D0),
            *range(0x400, 0x460),
            *range(0x1E00, 0x1F00),
            *range(0x2100, 0x2150),
            *range(0x2190, 0x2300),
            *range(0x2500, 0x2600),
            *range(0x2600, 0x2700),
            *range(0x2700, 0x27C0),
            *range(0x20A0, 0x20C0),
        ],
        1800,
    )
]
_EMOJI = [
    chr(c)
    for c in (
        0x1F602,
        0x2764,
        0x1F60D,
        0x1F44D,
        0x1F60A,
        0x1F389,
        0x1F525,
        0x2705,
        0x1F64F,
        *range(0x1F600, 0x1F650),
        *range(0x1F440, 0x1F4A0),
        *range(0x1F300, 0x1F330),
    )
]
_ALPHABETS = [
    [chr(b + i) for i in range(n)]
    for b, n in ((0x430, 32), (0x3B1, 25), (0x5D0, 27), (0x627, 20), (0x905, 40), (0xE01, 45))
]  # ru el he ar hi th


def _zipf(r: random.Random, seq, a: float = 1.0):
    return seq[min(int(r.paretovariate(a)) - 1, len(seq) - 1)]


def _foreign(r: random.Random) -> str:
    k = r.random()
    table = _CJK if k < 0.35 else _HANGUL if k < 0.45 else r.choice(_ALPHABETS)
    return _zipf(r, _PHRASES) if k > 0.6 else "".join(_zipf(r, table, 0.5) for _ in range(r.randint(2, 9)))


def _web_maker(r: random.Random, words: list[str]):
    """A function returning fresh web-style sentences (prices, dates, URLs, foreign runs, emoji ...)."""

    def w():
        return words[int(len(words) * r.random() ** 3)]  # skewed to frequent words, broad tail

    def n():
        return str(min(int(r.paretovariate(0.7)), 5000))

    fill = {
        "name": lambda: f"{_zipf(r, _FIRST)} {_zipf(r, _LAST)}",
        "w": w,
        "W": lambda: w().title(),
        "n": n,
        "d": lambda: str(r.randrange(10)),
        "year": lambda: str(r.randint(1995, 2019)),
        "price": lambda: r.choice(("${}.{:02d}", "${}", "£{}", "€{},{:02d}", "{}\u00a0€", "¥{}00", "US${}")).format(
            min(int(r.paretovariate(0.6)), 9999), r.randrange(100)
        ),
        "date": lambda: r.choice(("{m} {d}, {y}", "{d} {m} {y}", "{y}-{mm:02d}-{d:02d}", "{mm}/{d}/{y}")).format(
            m=r.choice(_MONTHS), mm=r.randint(1, 12), d=r.randint(1, 28), y=r.randint(2005, 2019)
        ),
        "time": lambda: r.choice(("{}:{:02d} pm", "{}:{:02d} a.m.", "{}:{:02d}")).format(
            r.randint(1, 12), r.randrange(0, 60, 5)
        ),
        "phone": lambda: r.choice(("({}) {}-{:04d}", "+44 20 {} {:04d}", "{}.{}.{:04d}")).format(
            r.randint(200, 999), r.randint(200, 999), r.randrange(10000)
        ),
        "url": lambda: f"https://www.{w()}{w()}{r.choice(_TLDS)}/{w()}-{w()}/" + r.choice(("", f"{n()}.html")),
        "email": lambda: f"{w()}@{w()}{r.choice(_TLDS)}",
        "pct": lambda: f"{r.randint(5, 95)}%",
        "temp": lambda: r.choice(("{}°F", "{}°C", "{}\u00a0°C", "{} degrees")).format(r.randint(-10, 105)),
        "day": lambda: r.choice(_DAYS),
        "city": lambda: r.choice((w().title(), _zipf(r, _ACCENTED))),
        "acc": lambda: _zipf(r, _ACCENTED),
        "foreign": lambda: _foreign(r),
        "lang": lambda: r.choice(_LANGS),
        "sym": lambda: _zipf(r, _SYMBOLS) if r.random() < 0.6 else _zipf(r, _RARE, 0.4),
        "emoji": lambda: _zipf(r, _EMOJI),
        "CODE": lambda: w().upper() + str(r.randint(10, 99)),
    }
    sub = re.compile(r"\{(\w+)\}").sub
    return lambda: sub(lambda m: fill[m.group(1)](), r.choice(_TEMPLATES))


def _variant(s: str, r: random.Random) -> str:
    """Web typography applied to a real sentence (curly quotes, dashes, NBSP, accented names, mojibake)."""
    if r.random() < 0.8:
        s = re.sub(r"(?<=\w)'(?=\w)", "\u2019", s)
        s = re.sub(r"\"([^\"]+)\"", "\u201c\\1\u201d", s)
        s = re.sub(r"(?<!\w)'([^']+)'(?!\w)", "\u2018\\1\u2019", s)
    s = s.replace(" - ", r.choice((" \u2013 ", "\u2014", " \u2014 ", " - ")))
    s = s.replace(", ", r.choice((" \u2014 ", " \u2013 ")), 1) if r.random() < 0.06 else s
    words = s.split(" ")
    names = [i for i in range(1, len(words)) if words[i].istitle() and words[i].isalpha()]
    if names and r.random() < 0.4:
        words[r.choice(names)] = _zipf(r, _ACCENTED)
        s = " ".join(words)
    i = s.find(" ", r.randrange(len(s))) if r.random() < 0.08 else -1
    s = s if i < 0 else s[:i] + "\u00a0" + s[i + 1 :]
    if r.random() < 0.02:
        s = s[:-1] + r.choice(("\u2026", "!", " " + _zipf(r, _EMOJI), " " + _zipf(r, _SYMBOLS) + "."))
    return s.encode().decode("cp1252", "replace") if r.random() < 0.01 else s  # mojibake, as in crawled text


# ----------------------------------------------------------------------------- generation
_STATE: dict = {}  # set in the parent before forking the writer pool
P_VARIANT, P_WEB, P_NEWLINE = 0.28, 0.10, 0.3  # per sentence slot


def _build_state(seed: int, sentences: list[str]) -> dict:
    counts = collections.Counter(
        t for s in sentences for t in s.split() if t.isalpha() and t.islower() and 2 < len(t) < 13
    )
    words = sorted(counts, key=lambda t: (-counts[t], t))[:6000]  # filler words by frequency (Zipf-sampled)
    r = random.Random(seed * 1_000_003 + 17)
    base = sentences + [_variant(s, r) for s in sentences]
    lens = np.array([len(s.encode()) + 1 for s in base], dtype=np.float64)
    web = _web_maker(random.Random(0), words)
    web_len = np.mean([len(web().encode()) + 1 for _ in range(5000)])
    n = len(sentences)
    mean_len = (1 - P_VARIANT - P_WEB) * lens[:n].mean() + P_VARIANT * lens[n:].mean() + P_WEB * web_len
    return {
        "pool": np.array([s + " " for s in base] + [s + "\n" for s in base], dtype=object),
        "n_real": n,
        "words": words,
        "mean_len": mean_len,
    }


def _doc_targets(seed: int, split_id: int, text_bytes: float, mean_len: float) -> np.ndarray:
    """Sentences per doc: log-normal doc lengths (median ~1.2k chars, mean ~2.2k, long tail)."""
    rng, out, total = np.random.default_rng([seed, split_id, 99]), [], 0.0
    while not out or total < text_bytes:
        lengths = np.clip(rng.lognormal(np.log(1200), 1.1, 65536), 120, 250_000)
        k = np.maximum(2, np.rint(lengths / mean_len)).astype(np.int64)
        cum = total + np.cumsum(k * mean_len)
        out.append(k[: np.searchsorted(cum, text_bytes) + 1])
        total = cum[len(out[-1]) - 1]
    return np.concatenate(out)


def _gen_chunk(task) -> tuple[bytes, int, int, int, int]:
    """Docs for one chunk -> (raw deflate ending in a sync flush, crc32, raw size, docs, text bytes)."""
    seed, split_id, chunk_no, k = task
    st, rng = _STATE, np.random.default_rng([seed, split_id, chunk_no])
    n, words, ndoc, total = st["n_real"], st["words"], len(k), int(k.sum())
    first = np.concatenate(([0], np.cumsum(k)[:-1]))
    steps = np.where(rng.random(total) < 0.12, rng.integers(0, n, total), rng.integers(1, 4, total))
    cs = np.cumsum(steps)
    idx = (np.repeat(rng.integers(0, n, ndoc) - cs[first], k) + cs) % n  # topic-coherent walk over sources
    kind, newline = rng.random(total), rng.random(total) < P_NEWLINE
    idx += np.where(kind < P_VARIANT, n, 0) + np.where(newline, 2 * n, 0)  # typographic variant; line break
    parts = st["pool"][idx].tolist()
    web = _web_maker(random.Random(int(rng.integers(2**62))), words)
    for i in np.flatnonzero(kind >= 1 - P_WEB).tolist():  # fresh web-style sentences
        parts[i] = web() + ("\n" if newline[i] else " ")
    stamps = np.datetime_as_string(np.datetime64("2019-04-18T00:00:00") + rng.integers(0, 9 * 86400, ndoc))
    wi = rng.integers(0, len(words), (ndoc, 6)).tolist()
    lines, text_bytes = [], 0
    for i, (a, b, ts, w) in enumerate(zip(first.tolist(), (first + k).tolist(), stamps, wi)):
        text = "".join(parts[a:b])[:-1]
        w = [words[j] for j in w]
        url = f"https://{'www.' if i % 3 else ''}{w[0]}{w[1]}{_TLDS[len(w[2]) % len(_TLDS)]}/{w[3]}-{w[4]}-{w[5]}/"
        lines.append(
            json.dumps({"text": text, "timestamp": ts + "Z", "url": url}, ensure_ascii=False, separators=(",", ":"))
        )
        text_bytes += len(text.encode())
    raw = ("\n".join(lines) + "\n").encode()
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    return comp.compress(raw) + comp.flush(zlib.Z_SYNC_FLUSH), zlib.crc32(raw), len(raw), ndoc, text_bytes


def _pool(processes: int):  # forked workers inherit _STATE; None means work in this process
    fork = processes > 1 and "fork" in mp.get_all_start_methods()
    return mp.get_context("fork").Pool(processes) if fork else contextlib.nullcontext()


def _write_split(tmp: Path, split: str, split_id: int, seed: int, text_mb: float, pool) -> dict:
    """Write one split; each file is one gzip member assembled pigz-style from sync-flushed chunks."""
    k = _doc_targets(seed, split_id, text_mb * 1e6, _STATE["mean_len"])
    per, n_files = DOCS_PER_FILE[split], -(-len(k) // DOCS_PER_FILE[split])
    if n_files > N_FILES[split]:
        raise ValueError(f"{split}: {len(k)} docs need more than {N_FILES[split]} files")
    tasks = [
        (seed, split_id, c, k[a : min(a + CHUNK_DOCS, (f + 1) * per)])
        for c, (f, a) in enumerate(
            (f, a) for f in range(n_files) for a in range(f * per, min(len(k), (f + 1) * per), CHUNK_DOCS)
        )
    ]
    results = iter(pool.imap(_gen_chunk, tasks) if pool else map(_gen_chunk, tasks))
    docs = text_bytes = 0
    for f in range(n_files):
        crc = size = 0
        with open(tmp / "en" / f"c4-{split}.{f:05d}-of-{N_FILES[split]:05d}.json.gz", "wb") as out:
            out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # gzip header, mtime 0
            while docs < min(len(k), (f + 1) * per):
                data, c, n, nd, nb = next(results)
                out.write(data)
                crc = zlib.crc32(bytes(n), crc) ^ c ^ zlib.crc32(bytes(n))  # crc32_combine
                size, docs, text_bytes = size + n, docs + nd, text_bytes + nb
            out.write(zlib.compressobj(6, zlib.DEFLATED, -15).flush() + struct.pack("<II", crc, size & 0xFFFFFFFF))
    return {"docs": docs, "text_bytes": text_bytes, "files": n_files}


def make_corpus(
    root: Path, text_mb: float, seed: int = 0, val_mb: float | None = None, processes: int | None = None
) -> dict:
    """Write (or reuse) a C4-shaped corpus in ``root``; returns docs/text bytes per split."""
    root = Path(root).absolute()
    params = {
        "version": VERSION,
        "text_mb": float(text_mb),
        "seed": int(seed),
        "val_mb": float(text_mb / 20 if val_mb is None else val_mb),
    }
    stamp = root / STAMP
    if stamp.is_file():
        old = json.loads(stamp.read_text())
        if old.get("params") == params:
            return old["summary"]
    if root.exists() and any(root.iterdir()) and not stamp.is_file():
        raise FileExistsError(f"{root} exists and is not a corpus made by this script")
    t0 = time.perf_counter()
    processes = processes or min(2, os.cpu_count() or 1)
    sentences = gather_sentences(processes)
    _STATE.clear()
    _STATE.update(_build_state(seed, sentences))
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "en").mkdir(parents=True)
    try:
        (tmp / "README.md").write_text(README)
        with _pool(processes) as pool:
            summary = {
                "train": _write_split(tmp, "train", 0, seed, params["text_mb"], pool),
                "validation": _write_split(tmp, "validation", 1, seed, params["val_mb"], pool),
            }
        summary["seconds"] = round(time.perf_counter() - t0, 2)
        summary["sources"] = {
            "sentences": len(sentences),
            "sha256": hashlib.sha256("\n".join(sentences).encode()).hexdigest(),
        }
        (tmp / STAMP).write_text(json.dumps({"params": params, "summary": summary}, indent=1))
        if root.exists():  # an older corpus of ours with other parameters
            shutil.rmtree(root)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _STATE.clear()
    return summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--text-mb", type=float, default=200.0, help="MB (1e6 bytes) of UTF-8 train text")
    ap.add_argument("--val-mb", type=float, default=None, help="validation text MB (default text-mb/20)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    print(json.dumps(make_corpus(a.out_dir, a.text_mb, a.seed, a.val_mb), indent=1))


if __name__ == "__main__":
    sys.exit(main())
