"""Which documents make up a dataset's slice, as the user named them: checked, and kept in the manifest.

Three ways to name the documents, all read in one streaming pass (stream.py):
  - a hub id (default `allenai/c4`, config `en`), or a local folder laid out like a hub repo;
  - local files (`--data-files`): JSON lines (.json, .jsonl, .json.gz) or Parquet with a text column,
    or plain text (.txt: a file, a glob or a folder of them), cut into documents by --doc-split.
Train is the first N documents (`--docs`, or every one with `--docs all`); validation comes from, in
this order: --val-data-files; a --val-fraction cut by characters at the end of the slice; the dataset's
validation split (--val-split, default `validation` where there is one); the M documents after the N;
and with `--docs all` and nothing else, the last 10% of the slice's characters.
A test split, kept apart from both, only where asked for: --test-data-files; a --test-fraction cut by
characters at the very end of the slice; the dataset's --test-split; or the --test-docs M documents
after the ones train (and validation, where it is the documents after train's) took.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from ..errors import UserError
from .textfiles import DOC_SPLITS

DEFAULT_DATASET, DEFAULT_CONFIG = "allenai/c4", "en"  # C4, the default source
HUB_DOCS = 3000  # --docs for a hub dataset when not given; local files default to all of them
MAX_DEFAULT_VAL_DOCS = 10_000
DEFAULT_VAL_FRACTION = 0.1  # nanoGPT's 90/10 cut, where nothing else names the validation text
EXTENSIONS = {
    ".json": "json",
    ".jsonl": "json",
    ".json.gz": "json",
    ".jsonl.gz": "json",
    ".parquet": "parquet",
    ".txt": "text",
}


@dataclass(frozen=True)
class Source:
    """Everything that decides which documents form the slice. Globs are kept as absolute patterns and
    expanded only when streaming, so a rerun that the frozen slice can serve needs neither the files nor
    the network. docs / val_docs None: all of them."""

    dataset: str | None  # hub id or absolute path of a folder laid out like a hub repo; None with data_files
    config: str | None
    data_files: str | None  # absolute glob, file or folder
    val_data_files: str | None
    docs: int | None
    val_docs: int | None
    text_column: str = "text"
    split: str = "train"
    val_split: str | None = None  # None: `validation` where the dataset has it
    revision: str | None = None  # a hub branch, tag or commit; the manifest also records the commit streamed
    doc_split: str | None = None  # plain text files: file, paragraph or line
    val_fraction: float | None = None  # validation is the last F of the slice's characters
    test_data_files: str | None = None  # absolute glob, file or folder
    test_split: str | None = None
    test_docs: int | None = None  # None: all of them (where there is a test split at all: test_rule)
    test_fraction: float | None = None  # test is the last F of the slice's characters, after validation

    @property
    def hub(self) -> bool:
        """The documents come from the hub (or HF_ENDPOINT's mirror), not from this machine."""
        return self.dataset is not None and not os.path.isabs(self.dataset)

    def val_rule(self) -> str:
        """Where validation comes from, as far as the arguments decide it: val_data_files, fraction,
        val_split, after_docs, or `auto` (the dataset's validation split if it has one, else the next rule)."""
        if self.val_data_files:
            return "val_data_files"
        if self.val_fraction is not None:
            return "fraction"
        if self.val_split is not None:
            return "val_split"
        if self.data_files:
            return "after_docs" if self.docs is not None else "fraction"
        return "auto"

    def test_rule(self) -> str | None:
        """Where the test split comes from: test_data_files, fraction, test_split, after_docs, or None
        (no test split: it is made only where asked for)."""
        if self.test_data_files:
            return "test_data_files"
        if self.test_fraction is not None:
            return "fraction"
        if self.test_split is not None:
            return "test_split"
        return "after_docs" if self.test_docs is not None else None

    def splits(self) -> tuple[str, ...]:
        """The splits this source makes: train, val, and test where asked for."""
        return ("train", "val", "test") if self.test_rule() else ("train", "val")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def differences(cls, old: dict, new: dict) -> list[str]:
        """The fields where a manifest's source (old; older manifests lack the later fields, which then
        held their defaults) differs from this one's JSON (new)."""
        defaults = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
        return [k for k in new if old.get(k, defaults.get(k)) != new[k]]

    def files(self, split: str) -> list[str] | None:
        """The local files of a split, sorted; None where the split comes from --dataset."""
        pattern, flag = {
            "train": (self.data_files, "--data-files"),
            "val": (self.val_data_files, "--val-data-files"),
            "test": (self.test_data_files, "--test-data-files"),
        }[split]
        return list(expand(pattern, flag)) if pattern else None

    def default_name(self) -> str:
        """Folder name under data/: the source and N (c4-en-3000, tinystories-3000, input-all, ...)."""
        n = "all" if self.docs is None else str(self.docs)
        if self.data_files:
            path = Path(self.data_files)
            stem = path.name if not re.search(r"[*?\[]", path.name) else re.sub(r"[*?\[\]]+", "", path.name)
            for ext in sorted(EXTENSIONS, key=len, reverse=True):
                stem = stem[: -len(ext)] if stem.endswith(ext) else stem
            base = stem.strip(".-_") or path.parent.name
        else:
            base = Path(self.dataset).name if os.path.isabs(self.dataset) else self.dataset.split("/")[-1]
            base = base.lower()
            if self.config:
                base = f"{base}-{self.config}"
        return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{base}-{n}").strip("_")


def parse_count(value: str | int | None, flag: str) -> int | None | str:
    """A --docs / --val-docs value: a whole number, `all` (None), or left out ("default")."""
    if value is None:
        return "default"
    if isinstance(value, int) or str(value).strip().lower() != "all":
        try:
            n = int(value)
        except ValueError:
            raise UserError(
                f"{flag} {value!r} is not a number", f"give a count such as {flag} 3000, or {flag} all"
            ) from None
        if n < 1:
            raise UserError(
                f"{flag} must be at least 1 (got {n})",
                {
                    "--docs": "ask for the number of documents, e.g. --docs 3000",
                    "--val-docs": "validation needs documents of its own; leave --val-docs out for N/10",
                }.get(flag, f"a test split needs documents of its own, e.g. {flag} 500"),
            )
        return n
    return None


def resolve_source(
    dataset: str | None = None,
    config: str | None = None,
    data_files: str | None = None,
    val_data_files: str | None = None,
    docs: str | int | None = None,
    val_docs: str | int | None = None,
    text_column: str | None = None,
    split: str | None = None,
    val_split: str | None = None,
    revision: str | None = None,
    doc_split: str | None = None,
    val_fraction: float | None = None,
    test_data_files: str | None = None,
    test_docs: str | int | None = None,
    test_split: str | None = None,
    test_fraction: float | None = None,
) -> Source:
    """Check the command line's source arguments and turn them into a Source."""
    if dataset is not None and data_files is not None:
        raise UserError(
            "--dataset and --data-files both name the train documents",
            "give one of them: a hub id or folder in --dataset, or local files in --data-files",
        )
    if data_files is not None:
        for flag, value in (
            ("--config", config),
            ("--split", split),
            ("--val-split", val_split),
            ("--test-split", test_split),
            ("--revision", revision),
        ):
            if value is not None:
                raise UserError(
                    f"{flag} applies to --dataset, not to --data-files",
                    f"leave {flag} out with local files (they have no configs, splits or revisions)",
                )
    _check_validation(val_data_files, val_docs, val_split, val_fraction)
    n, m = parse_count(docs, "--docs"), parse_count(val_docs, "--val-docs")
    if n == "default":
        n = None if data_files else HUB_DOCS
    if data_files and not val_data_files and n is None and m != "default":
        raise none_after_all(val_docs)
    if m == "default":
        m = _default_held_out(n)
    text_column = text_column if text_column is not None else "text"
    if not text_column:
        raise UserError(
            "--text-column is empty", "name the column that holds the documents' text, e.g. --text-column text"
        )
    if doc_split is not None and doc_split not in DOC_SPLITS:
        raise UserError(
            f"--doc-split {doc_split!r} is not one of {', '.join(DOC_SPLITS)}",
            "file: a file is a document; paragraph: text between blank lines; line: one line",
        )
    common = dict(
        data_files=None,
        val_data_files=_absolute(val_data_files) if val_data_files else None,
        docs=n,
        val_docs=m,
        text_column=text_column,
        doc_split=doc_split,
        val_fraction=val_fraction,
        **_resolve_test(n, test_data_files, test_docs, test_split, test_fraction, val_fraction),
    )
    if data_files:
        source = Source(None, None, **{**common, "data_files": _absolute(data_files)})
    else:
        dataset = dataset or DEFAULT_DATASET
        local = os.path.expanduser(dataset)
        if os.path.isdir(local) or local.startswith((".", "/")) or dataset.count("/") > 1:  # a path, not owner/name
            dataset = os.path.abspath(local)
        if revision is not None and os.path.isabs(dataset):
            raise UserError(
                "--revision applies to a hub dataset, not to a local folder",
                "leave --revision out: a local folder is read as it is",
            )
        if config is None and dataset == DEFAULT_DATASET:
            config = DEFAULT_CONFIG
        source = Source(dataset, config, split=split or "train", val_split=val_split, revision=revision, **common)
    _check_apart(source)
    return source


def _default_held_out(n: int | None) -> int | None:
    """--val-docs (and --test-docs with files or a split of their own) when left out: N/10, 1 to 10,000."""
    return None if n is None else min(max(n // 10, 1), MAX_DEFAULT_VAL_DOCS)


def _resolve_test(n, test_data_files, test_docs, test_split, test_fraction, val_fraction) -> dict:
    """The Source fields of the test split, checked: none of them set where no test split is asked for."""
    given = [
        (flag, v)
        for flag, v in (
            ("--test-data-files", test_data_files),
            ("--test-split", test_split),
            ("--test-docs", test_docs),
        )
        if v is not None
    ]
    if test_fraction is not None:
        if not 0 < test_fraction <= 0.5 or test_fraction + (val_fraction or 0) > 0.5 + 1e-12:
            raise UserError(
                f"--test-fraction must be above 0, and with --val-fraction at most 0.5 (got {test_fraction}"
                + (f" and {val_fraction})" if val_fraction else ")"),
                "e.g. --test-fraction 0.05: the last 5% of the characters are the test split",
            )
        if given:
            raise UserError(
                f"--test-fraction and {given[0][0]} both say what the test split is",
                f"give one of them: --test-fraction F cuts the last F of the characters, {given[0][0]} names documents",
            )
    if test_data_files is not None and test_split is not None:
        raise UserError("--test-data-files and --test-split both name the test documents", "give one of them")
    k = parse_count(test_docs, "--test-docs")
    if k == "default":
        k = _default_held_out(n) if (test_data_files or test_split) else None
    elif k is None and not (test_data_files or test_split):
        raise UserError(
            "--test-docs all names no documents of its own",
            "give --test-docs M (the M documents after the train and validation ones), or say where the test "
            "split comes from: --test-split NAME, --test-data-files FILES or --test-fraction F",
        )
    elif not (test_data_files or test_split) and n is None:
        raise UserError(
            f"--test-docs {k} asks for the documents after the train ones, but --docs all leaves none",
            "give --docs N, or a test split of its own: --test-data-files FILES, --test-split NAME, --test-fraction F",
        )
    return dict(
        test_data_files=_absolute(test_data_files) if test_data_files else None,
        test_split=test_split,
        test_docs=k,
        test_fraction=test_fraction,
    )


def _check_apart(source: Source) -> None:
    """The test split must not be train's or validation's documents."""
    if source.test_split is not None:
        val = source.val_split or ("validation" if source.val_rule() == "auto" else None)
        for flag, name in (("--split", source.split), ("--val-split", val)):
            if source.test_split == name:
                raise UserError(
                    f"--test-split {name} is the split that {'train' if flag == '--split' else 'validation'} "
                    "comes from",
                    "a test split is kept apart: name another split, or another one for "
                    + ("train with --split" if flag == "--split" else "validation with --val-split"),
                )
    if source.test_data_files is not None:
        for flag, pattern in (("--data-files", source.data_files), ("--val-data-files", source.val_data_files)):
            if source.test_data_files == pattern:
                raise UserError(
                    f"--test-data-files and {flag} name the same files",
                    "a test split is kept apart: give it files of its own",
                )


def none_after_all(val_docs) -> UserError:
    """--val-docs where validation would be the documents after train's, and train takes them all."""
    return UserError(
        f"--val-docs {val_docs} asks for the documents after the train ones, but --docs all leaves none",
        "give --docs N (validation is then the documents after the N), or validation of its own: "
        "--val-data-files FILES, or --val-fraction F",
    )


def _check_validation(val_data_files, val_docs, val_split, val_fraction) -> None:
    if val_fraction is None:
        return
    if not 0 < val_fraction <= 0.5:
        raise UserError(
            f"--val-fraction must be above 0 and at most 0.5 (got {val_fraction})",
            "e.g. --val-fraction 0.1: the last 10% of the characters are validation",
        )
    for flag, value in (("--val-docs", val_docs), ("--val-data-files", val_data_files), ("--val-split", val_split)):
        if value is not None:
            raise UserError(
                f"--val-fraction and {flag} both say what validation is",
                f"give one of them: --val-fraction F cuts the last F of the characters, {flag} names documents",
            )


def files_kind(files: list[str], flag: str) -> str:
    """The format of a flag's files (json, parquet or text), which must all be of one kind."""
    kinds = {_kind(f, flag) for f in files}
    if len(kinds) > 1:
        raise UserError(f"{flag} mixes {' and '.join(sorted(kinds))} files", "give files of one format per flag")
    return kinds.pop()


def _absolute(pattern: str) -> str:
    return os.path.abspath(os.path.expanduser(pattern))


def expand(pattern: str, flag: str) -> tuple[str, ...]:
    """The files a pattern names, sorted: a file, a glob, or a folder (its .txt, JSON and Parquet files,
    at any depth)."""
    if os.path.isdir(pattern):
        found = [
            p
            for p in glob.glob(os.path.join(glob.escape(pattern), "**", "*"), recursive=True)
            if os.path.isfile(p) and any(p.endswith(ext) for ext in EXTENSIONS)
        ]
        if not found:
            raise UserError(
                f"{flag} {pattern} is a folder with no .txt, JSON lines or Parquet files in it",
                "check the folder, or give the files themselves",
            )
    else:
        found = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
    files = sorted(set(found))
    if not files:
        raise UserError(
            f"{flag} '{pattern}' matches no file",
            "check the path; quote the glob so the shell passes it on, e.g. 'DIR/c4-train.*.json.gz'",
        )
    return tuple(files)


def _kind(path: str, flag: str) -> str:
    for ext, kind in EXTENSIONS.items():
        if path.endswith(ext):
            return kind
    raise UserError(
        f"{flag}: {path} is not a file minigpt-prepare reads",
        "give plain text (.txt), JSON lines (.json, .jsonl, .json.gz, .jsonl.gz) or .parquet with a text column",
    )
