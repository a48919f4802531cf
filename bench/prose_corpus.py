#!/usr/bin/env python3
"""A corpus of real English prose documents, for the quality benchmark (bench/quality_bench.py).

    python bench/prose_corpus.py bench/.corpus/prose [--train-docs 2000 --val-docs 300]

Unlike bench/c4_corpus.py, which resamples sentences into made-up documents for speed tests, every
document here is real, contiguous text: consecutive prose paragraphs of one source, as written. Sources
found on this machine: the GNU manuals in /usr/share/info, Python's language reference (pydoc topics),
the licences in /usr/share/common-licenses and README files in /usr/share/doc. Wrapped lines are
joined, so a paragraph is one line as in C4; paragraphs that are mostly code, tables or option lists
are left out. Documents of about 1-3 KB are shuffled with a fixed seed and written in C4's format:
OUT/train.jsonl.gz and OUT/val.jsonl.gz, ready for `minigpt-prepare --data-files ... --val-data-files ...`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
from pathlib import Path

_WORD = re.compile(r"[A-Za-z]{2,}")
_SENTENCE_END = re.compile(r"[.!?:][\"'’”)]?$")


def _read(path: Path) -> str:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return data.decode("utf-8", errors="replace")


def sources() -> list[tuple[str, str]]:
    """(name, text) of every source, in a fixed order."""
    out = []
    for p in sorted(Path("/usr/share/info").glob("*.info*.gz")):
        out.append((f"info/{p.name}", _read(p)))
    try:
        from pydoc_data.topics import topics

        out += [(f"pydoc/{k}", topics[k]) for k in sorted(topics)]
    except ImportError:
        pass
    for p in sorted(Path("/usr/share/common-licenses").glob("*")):
        if p.is_file():
            out.append((f"licenses/{p.name}", _read(p)))
    for p in sorted(Path("/usr/share/doc").glob("*/README*")):
        if p.is_file() and p.suffix in ("", ".gz", ".txt", ".md") and p.stat().st_size < 500_000:
            out.append((f"doc/{p.parent.name}/{p.name}", _read(p)))
    for root in ("/usr/share/perl", "/usr/lib/x86_64-linux-gnu/perl"):  # Perl's documentation (POD)
        for p in sorted(Path(root).rglob("*")):
            if p.suffix in (".pod", ".pm") and p.is_file():
                out.append((f"perl/{p.relative_to(root)}", _pod_text(_read(p))))
    out += [(f"python/{name}", doc) for name, doc in _python_docstrings()]
    return out


def _pod_text(text: str) -> str:
    """The prose of a Perl file's POD: paragraphs outside code, without =commands."""
    keep, inside = [], text.lstrip().startswith("=")
    for line in text.splitlines():
        if line.startswith("=cut"):
            inside = False
        elif line.startswith("="):
            inside = True
            keep.append("")
        elif inside:
            keep.append(line)
    return re.sub(r"[A-Z]<+([^<>]*)>+", r"\1", "\n".join(keep))  # C<code>, I<italic>, L<link>: the text


def _python_docstrings() -> list[tuple[str, str]]:
    """Docstrings of the Python standard library running this script, module by module."""
    import ast
    import sysconfig

    out = []
    for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            tree = ast.parse(p.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        docs = [
            ast.get_docstring(n, clean=True)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        ]
        out.append((p.name, "\n\n".join(d for d in docs if d)))
    return out


def prose_paragraphs(text: str) -> list[str]:
    """Paragraphs that read as prose, each joined into one line."""
    out = []
    for block in re.split(r"\n[ \t]*\n", text):
        lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
        if not lines or any(ln.startswith(("*", "-", "$", "#", ">", "|", "+", "=")) for ln in lines[:1]):
            continue
        para = " ".join(lines)
        letters = sum(c.isalpha() or c == " " for c in para)
        if (
            len(para) >= 120
            and letters / len(para) > 0.85
            and len(_WORD.findall(para)) >= 20
            and _SENTENCE_END.search(para)
            and para[0].isupper()
        ):
            out.append(re.sub(r"\s+", " ", para))
    return out


def documents(min_chars: int = 1000, max_chars: int = 3000) -> list[dict]:
    docs = []
    for name, text in sources():
        current: list[str] = []
        for para in prose_paragraphs(text):
            current.append(para)
            size = sum(len(p) + 1 for p in current)
            if size >= min_chars:
                body = "\n".join(current)[:max_chars]
                docs.append({"text": body, "url": f"file:///{name}#{len(docs)}", "timestamp": "2026-11-27T00:00:00Z"})
                current = []
    return docs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--train-docs", type=int, default=2000)
    ap.add_argument("--val-docs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    docs = documents()
    random.Random(args.seed).shuffle(docs)
    need = args.train_docs + args.val_docs
    if len(docs) < need:
        raise SystemExit(f"only {len(docs)} prose documents found on this machine; ask for fewer")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", docs[: args.train_docs]), ("val", docs[args.train_docs : need])):
        data = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in part).encode("utf-8")
        with open(args.out / f"{name}.jsonl.gz", "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
            gz.write(data)
        print(
            f"{name}: {len(part):,} documents, {sum(len(d['text']) for d in part):,} characters, "
            f"sha256 {hashlib.sha256(data).hexdigest()[:16]}"
        )
    print(f"{len(docs):,} documents found; sources: {len(sources())}")


if __name__ == "__main__":
    main()
