"""The command line: minigpt-prepare, minigpt-train, minigpt-sample.

Each command turns its flags into the library's arguments and prints the result. A UserError becomes
one clear message and a non-zero exit, with no traceback; Ctrl-C and SIGTERM exit with 130/143 after
the command has removed what it had half-written.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import Interrupted, UserError


def _on_signal(signum, frame):
    raise Interrupted(signum)


def _run(app: typer.Typer) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):  # unwind, so temporary files are removed
        signal.signal(sig, _on_signal)
    try:
        app()
    except Interrupted as e:
        name = "interrupted" if e.signum == signal.SIGINT else "terminated"
        print(f"minigpt: {name}; nothing half-written was kept", file=sys.stderr)
        sys.exit(128 + e.signum)


def _fail(e: UserError) -> typer.Exit:
    print(f"error: {e}", file=sys.stderr)
    return typer.Exit(e.exit_code)


prepare_app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False,
                          help="Stream a fixed slice of C4 once, freeze it with a character vocabulary, "
                               "and write uint8/uint16 token shards for minigpt-train.")


@prepare_app.command()
def prepare(
    docs: int = typer.Option(3000, "--docs", help="N: train documents, the first N of the train split."),
    val_docs: Optional[int] = typer.Option(None, "--val-docs", show_default="N/10, 1 to 10,000",
                                           help="M: validation documents, the first M of the validation split."),
    dataset: Optional[str] = typer.Option(None, "--dataset", show_default="allenai/c4",
                                          help="Hub id, or a local folder laid out like the hub repo."),
    config: str = typer.Option("en", "--config", help="Dataset config (C4: en, en.noblocklist, realnewslike, ...)."),
    data_files: Optional[str] = typer.Option(None, "--data-files", metavar="GLOB",
                                             help="Local C4-format files instead of --dataset (json, jsonl, json.gz, "
                                                  "parquet). Alone, validation is the M documents after the N."),
    val_data_files: Optional[str] = typer.Option(None, "--val-data-files", metavar="GLOB",
                                                 help="Local files for the validation documents."),
    out: Optional[Path] = typer.Option(None, "--out", show_default="data/<source>-<N>",
                                       help="The dataset folder to write."),
    min_count: Optional[int] = typer.Option(None, "--min-count", metavar="K",
                                            show_default="1 per million train chars, at least 10",
                                            help="A character enters the vocabulary when it occurs at least K times "
                                                 "in train; rarer ones become <unk>."),
    max_vocab: Optional[int] = typer.Option(None, "--max-vocab", metavar="V", show_default="no cap",
                                            help="Keep at most V entries (the 2 special tokens included), the most "
                                                 "frequent characters first. 256 keeps uint8 shards."),
    shard_tokens: int = typer.Option(100_000_000, "--shard-tokens", metavar="S", help="Tokens per shard file, at most."),
    force: bool = typer.Option(False, "--force", help="Replace an existing dataset made with other arguments."),
) -> None:
    from .c4 import resolve_source
    from .prepare import BuildOptions, prepare as run_prepare

    try:
        source = resolve_source(dataset, config, data_files, val_data_files, docs, val_docs)
        result = run_prepare(source, BuildOptions(min_count, max_vocab, shard_tokens), out, force)
    except UserError as e:
        raise _fail(e) from None
    _summary(result)


def _summary(result) -> None:
    m = result.manifest
    if result.action == "unchanged":
        print(f"{result.out}: already complete with these arguments; nothing to do")
    else:
        how = "rebuilt from raw/ (no streaming)" if result.action == "rebuilt" else "built"
        print(f"{result.out}: {how} in {result.seconds:.1f} s")
    text_mb = 0.0
    for split, s in m["splits"].items():
        rate = s["unk"] / s["tokens"] if s["tokens"] else 0.0
        print(f"  {split:5} {s['docs']:>10,} docs {s['chars']:>14,} chars {s['tokens']:>14,} tokens "
              f"{s['unk']:>10,} unk ({rate:.4%}) {len(s['shards']):>4} shard(s)")
        text_mb += s["bytes"] / 1e6
    print(f"  vocabulary {m['vocab_size']} entries (min count {m['min_count']}), {m['dtype']} shards")
    if result.action != "unchanged" and result.seconds > 0:
        print(f"  {text_mb:,.1f} MB of text, {text_mb / result.seconds:,.1f} MB/s")


def prepare_cli() -> None:
    _run(prepare_app)


def _not_built(name: str) -> None:
    print(f"{name} is not built yet: only minigpt-prepare works in this version", file=sys.stderr)
    sys.exit(2)


def train_cli() -> None:
    _not_built("minigpt-train")


def sample_cli() -> None:
    _not_built("minigpt-sample")
