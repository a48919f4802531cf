"""Benchmark minigpt-prepare end to end on a local C4-shaped corpus, as json.gz and as plain text.

Makes (or reuses) a corpus laid out like the hub repo with `c4_corpus.py`, then runs the whole command
`python prepare.py --dataset CORPUS --docs N ...` in a fresh process for each size of N, several
times, and prints text MB/s, docs/s and peak RSS of that process, then the same as one JSON line.
With --text, the same documents also as plain text files (one per json.gz file, a blank line between
documents, made once beside the corpus): `python prepare.py --data-files TEXT/train --val-data-files
TEXT/validation --doc-split paragraph --docs N --val-docs M`, run in turn with the json.gz command.

    python bench/prepare_bench.py                      # 800 MB corpus, N = a quarter, half and all of it
    python bench/prepare_bench.py --text-mb 200 --docs 40000 --docs 80000 --repeat 5
    python bench/prepare_bench.py --text-mb 200 --text  # json.gz and plain text, side by side

Text MB counts the UTF-8 bytes of the text of all documents (train and validation) over the wall
time of the whole command, start-up and imports included. Peak RSS comes from wait4() on the child.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from c4_corpus import make_corpus  # noqa: E402


def text_copy(corpus: Path) -> Path:
    """The corpus's documents as plain text, made once: TEXT/{train,validation}/*.txt, one file per
    json.gz file, each document followed by a blank line (C4-shaped documents hold no blank lines)."""
    import gzip

    text = corpus.parent / f"{corpus.name}-text"
    stamp = text / "stamp.json"
    key = json.loads((corpus / "c4_corpus_stamp.json").read_text())
    if stamp.is_file() and json.loads(stamp.read_text()) == key:
        return text
    shutil.rmtree(text, ignore_errors=True)
    for split in ("train", "validation"):
        (text / split).mkdir(parents=True)
        for f in sorted((corpus / "en").glob(f"c4-{split}.*.json.gz")):  # a line at a time: this process stays
            with (
                gzip.open(f, "rt", encoding="utf-8") as src,
                open(text / split / f.name.replace(".json.gz", ".txt"), "w", encoding="utf-8") as dst,
            ):
                for line in src:  # small, and its children's peak RSS (which starts from its own) is theirs
                    dst.write(json.loads(line)["text"] + "\n\n")
    stamp.write_text(json.dumps(key))
    return text


def command(kind: str, corpus: Path, docs: int, val_docs: int, out: Path) -> list[str]:
    source = (
        ["--dataset", str(corpus)]
        if kind == "json.gz"
        else [
            "--data-files",
            str(corpus / "train"),
            "--val-data-files",
            str(corpus / "validation"),
            "--doc-split",
            "paragraph",
        ]
    )
    return [
        sys.executable,
        str(ROOT / "prepare.py"),
        *source,
        "--docs",
        str(docs),
        "--val-docs",
        str(val_docs),
        "--out",
        str(out),
        "--force",
    ]


def run_once(cmd: list[str], docs: int, val_docs: int, out: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    shutil.rmtree(out, ignore_errors=True)  # a first build each time, not a replacement of the last one
    os.sync()  # the previous run's writes are not flushed on this run's clock
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    out_text, err_text = proc.stdout.read().decode(), proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"prepare failed:\n{out_text}\n{err_text}")
    manifest = json.loads((out / "manifest.json").read_text())
    splits = manifest["splits"].values()
    text_mb = sum(s["bytes"] for s in splits) / 1e6
    n_docs = sum(s["docs"] for s in splits)
    return {
        "docs": docs,
        "val_docs": val_docs,
        "seconds": round(seconds, 3),
        "text_mb": round(text_mb, 2),
        "text_mb_s": round(text_mb / seconds, 2),
        "docs_s": round(n_docs / seconds, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "vocab_size": manifest["vocab_size"],
        "dtype": manifest["dtype"],
        "tokens": sum(s["tokens"] for s in splits),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--corpus", type=Path, default=ROOT / "bench" / ".corpus", help="where the corpus is made or reused"
    )
    ap.add_argument("--text-mb", type=float, default=800, help="train text of the corpus, MB (at least 200)")
    ap.add_argument("--docs", type=int, action="append", help="a size of N (repeatable); default 1/4, 1/2 and all")
    ap.add_argument("--val-docs", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per size; the median is reported")
    ap.add_argument("--json", type=Path, help="also write the JSON result here")
    ap.add_argument("--text", action="store_true", help="also the same documents as plain text files, in turn")
    args = ap.parse_args()

    corpus = args.corpus / f"c4-{args.text_mb:g}mb"
    t = time.perf_counter()
    info = make_corpus(corpus, args.text_mb)
    print(
        f"corpus {corpus}: {info['train']['docs']:,} train docs, {info['train']['text_bytes'] / 1e6:,.1f} MB text "
        f"({time.perf_counter() - t:.1f} s)",
        file=sys.stderr,
    )
    total = info["train"]["docs"]
    sizes = args.docs or [total // 4, total // 2, total]
    sources = {"json.gz": corpus}
    if args.text:
        sources["text"] = text_copy(corpus)
    results = []
    with tempfile.TemporaryDirectory(prefix="minigpt-bench-") as tmp:
        for docs in sizes:
            runs = {kind: [] for kind in sources}
            for _ in range(args.repeat):  # the sources take turns: the machine's slow spells fall on both
                for kind, where in sources.items():
                    out = Path(tmp) / f"ds{docs}"
                    runs[kind].append(
                        run_once(command(kind, where, docs, args.val_docs, out), docs, args.val_docs, out)
                    )
                    shutil.rmtree(out, ignore_errors=True)
            for kind, kind_runs in runs.items():
                med = sorted(kind_runs, key=lambda r: r["seconds"])[len(kind_runs) // 2]
                best = min(kind_runs, key=lambda r: r["seconds"])
                row = {
                    "source": kind,
                    **med,
                    "best_text_mb_s": best["text_mb_s"],
                    "text_mb_s_all": [r["text_mb_s"] for r in kind_runs],
                    "peak_rss_mb_max": max(r["peak_rss_mb"] for r in kind_runs),
                }
                results.append(row)
                print(
                    f"{kind:8} N={docs:>9,}  {row['text_mb']:8,.1f} MB  {row['seconds']:6.2f} s  {row['text_mb_s']:6.1f} "
                    f"MB/s (best {row['best_text_mb_s']:.1f})  {row['docs_s']:9,.0f} docs/s  peak RSS "
                    f"{row['peak_rss_mb']:6.1f} MB  vocab {row['vocab_size']} {row['dtype']}",
                    file=sys.stderr,
                )
    result = {
        "bench": "prepare",
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "corpus_text_mb": args.text_mb,
        "corpus_sha256": info["sources"]["sha256"],
        "runs": results,
        "rss_growth": {
            kind: round(rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"], 3)
            for kind in sources
            if (rows := [r for r in results if r["source"] == kind])
        },
    }
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
