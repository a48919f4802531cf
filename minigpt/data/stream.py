"""Streaming a source's documents once: `datasets.load_dataset(..., streaming=True)` for the hub, folders
laid out like hub repos and JSON/Parquet files; textfiles.py for plain text. Library errors become one
clear message each (errors.UserError).

The hub id goes to `datasets` unchanged, so HF_ENDPOINT and mirrors work. Before it does, the hub's
host name is looked up (a machine without a network fails at once, where huggingface_hub would retry
for ~23 s) and the revision is resolved to its commit, which is then what gets streamed and what the
manifest records: another machine given `--revision COMMIT` streams the same slice.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import sys
import time
import zlib
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import urlsplit

import pyarrow as pa

from ..errors import UserError
from .source import DEFAULT_VAL_FRACTION, Source, files_kind, none_after_all
from .textfiles import read_documents

# The dataset card front matter that makes a local folder read like the hub repo allenai/c4, config en:
# `datasets` takes the splits from `configs:`, and the column types from `dataset_info` (without it,
# pyarrow would read timestamps as datetimes where the hub gives strings).
_FEATURES_YAML = """dataset_info:
- config_name: en
  features:
  - name: text
    dtype: string
  - name: timestamp
    dtype: string
  - name: url
    dtype: string
"""
_CONFIGS_YAML = """configs:
- config_name: en
  data_files:
  - split: train
    path: en/c4-train.*.json.gz
  - split: validation
    path: en/c4-validation.*.json.gz
"""


def mirror_readme(title: str, features: bool = True) -> str:
    """README.md for a folder laid out like the hub repo (`en/c4-train.*.json.gz`, `en/c4-validation.*`)."""
    return f"---\n{_FEATURES_YAML if features else ''}{_CONFIGS_YAML}---\n\n# {title}\n"


HUB_HINT = (
    "work offline with local files: --data-files FILES (text, JSON lines or Parquet; --val-data-files too), "
    "or --dataset DIR for a local folder laid out like the hub repo, or set HF_ENDPOINT to a reachable hub mirror"
)

COLUMNS = ("text", "url", "timestamp")  # C4's fields; url and timestamp are null where a source has none
SCHEMA = pa.schema([(name, pa.string()) for name in COLUMNS])
BATCH_DOCS = 1000  # documents per Arrow batch from `datasets`: ~2 MB of C4 text, cache friendly (tests: a few)


def check_hub_reachable(dataset: str) -> None:
    """Fail at once when the hub's host name does not resolve (no network, or a mistyped HF_ENDPOINT).
    Transient faults after that (dropped connections, 429, 5xx) are left to the libraries' retries."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return  # datasets says so at once itself
    url = urlsplit(constants.ENDPOINT)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise UserError(
            f"HF_ENDPOINT {constants.ENDPOINT!r} is not an http(s) URL",
            "set it to a hub mirror such as https://hf-mirror.example, or unset it for huggingface.co",
        )
    try:
        socket.getaddrinfo(url.hostname, url.port or (443 if url.scheme == "https" else 80))
    except (socket.gaierror, UnicodeError) as e:
        raise UserError(
            f"cannot reach the Hugging Face Hub for {dataset}: the host name {url.hostname} does not "
            f"resolve ({getattr(e, 'strerror', None) or e}); is this machine offline?",
            HUB_HINT,
        ) from None


HUB_RETRY_SECONDS = (1, 2, 4, 8)  # waits between tries of the hub's API when the fault may pass


def hub_commit(source: Source) -> str:
    """The commit of the hub dataset at --revision (its default branch without one). Connection faults,
    429 and 5xx are retried (HUB_RETRY_SECONDS) as huggingface_hub retries its downloads."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    check_hub_reachable(source.dataset)
    for wait in (*HUB_RETRY_SECONDS, None):
        try:
            return HfApi().dataset_info(source.dataset, revision=source.revision).sha
        except OfflineModeIsEnabled:
            raise UserError(
                f"cannot reach the Hugging Face Hub for {source.dataset} (HF_HUB_OFFLINE is set)", HUB_HINT
            ) from None
        except RevisionNotFoundError:
            raise UserError(
                f"{source.dataset} has no revision {source.revision!r} on the hub",
                "give a branch, tag or commit of the dataset in --revision, or leave it out for the default branch",
            ) from None
        except GatedRepoError:
            raise UserError(
                f"{source.dataset} is gated or private on the hub",
                "accept its terms on the hub and log in (`hf auth login`), or set HF_TOKEN",
            ) from None
        except RepositoryNotFoundError:
            raise UserError(
                f"cannot find the dataset {source.dataset} on the hub",
                "check the id in --dataset (owner/name, e.g. roneneldan/TinyStories)",
            ) from None
        except Exception as e:  # the HTTP client's transport errors (httpx or its fork, by version), or HTTP ones
            kinds = {c.__name__ for c in type(e).__mro__}
            transport = bool(kinds & {"NetworkError", "TimeoutException", "RemoteProtocolError"}) or isinstance(
                e, OSError
            )
            if not (transport or isinstance(e, HfHubHTTPError)):
                raise
            status = getattr(getattr(e, "response", None), "status_code", None)
            if isinstance(e, HfHubHTTPError) and status is not None and status != 429 and status < 500:
                raise UserError(f"the hub refused {source.dataset}: {str(e).splitlines()[0]}", HUB_HINT) from None
            if wait is None:
                raise UserError(
                    f"cannot reach the Hugging Face Hub for {source.dataset}, after retries: "
                    f"{type(e).__name__}: {str(e).splitlines()[0]}",
                    HUB_HINT,
                ) from None
            print(f"the hub: {type(e).__name__}: {str(e).splitlines()[0]}; trying again in {wait} s", file=sys.stderr)
            time.sleep(wait)
    raise AssertionError("unreachable")


class SplitStream:
    """One split of the source, opened (so a split that does not exist fails here), then read once and
    handed out in consecutive slices of exact sizes. role: train, val or test (from --val-data-files or
    --test-data-files where given, else the dataset's split `split`)."""

    def __init__(self, source: Source, split: str, role: str = "train", commit: str | None = None):
        self.source, self.split, self.commit = source, split, commit
        own = {"val": source.val_data_files, "test": source.test_data_files}.get(role)
        self.flag = f"--{role}-data-files" if own else "--data-files"
        self.files = source.files(role if own else "train")
        self.where = _describe(source, split, self.flag if self.files is not None else None)
        self.docs = 0  # documents handed out so far
        self._rest: pa.Table | None = None
        with _readable(self.where, source):
            self._tables = self._open()

    def _open(self) -> Iterator[pa.Table]:
        source, files = self.source, self.files
        kind = files_kind(files, self.flag) if files is not None else None
        if kind == "text":
            return self._text(files)
        if source.doc_split is not None:
            raise UserError(
                "--doc-split applies to plain text files (.txt) only",
                "leave --doc-split out: JSON, Parquet and hub datasets hold one document a record",
            )
        if files is not None:
            with _without_torch():
                return self._batches(_load(kind, data_files={self.split: files}, split=self.split))
        if os.path.isabs(source.dataset) and not os.path.isdir(source.dataset):
            raise UserError(
                f"--dataset {source.dataset}: no such folder",
                "give a hub id such as allenai/c4, or a folder laid out like a hub repo (README.md + data files)",
            )
        with _without_torch():
            return self._batches(_load(source.dataset, source.config, split=self.split, revision=self.commit))

    def _batches(self, ds) -> Iterator[pa.Table]:
        with _without_torch():
            for table in ds.with_format("arrow").iter(batch_size=BATCH_DOCS):
                yield normalize(table, self.where, self.source.text_column)

    def _text(self, files: list[str]) -> Iterator[pa.Table]:
        for path in files:
            for docs in read_documents(path, self.source.doc_split or "file"):
                nulls = pa.nulls(len(docs), pa.string())
                yield pa.Table.from_arrays([docs, nulls, nulls], schema=SCHEMA)

    def _next(self) -> pa.Table | None:
        """The pass's next batch, or None at its end. Called, not wrapped in a generator per take(): closing
        such a generator (train's slice done) would close the shared pass, and validation would find it over."""
        with _readable(self.where, self.source):
            return next(self._tables, None)

    def take(self, n: int | None, what: str) -> Iterator[pa.Table]:
        """The next n documents (all that are left with None)."""
        got = 0
        while n is None or got < n:
            table, self._rest = self._rest, None
            if table is None:
                table = self._next()
                if table is None:
                    if self.docs == 0:
                        raise UserError(
                            f"{self.where} has no documents (empty files, or only blank lines?)",
                            "give files with text in them",
                        )
                    if n is None:
                        break
                    raise UserError(
                        f"{self.where} has only {self.docs} documents, but {what} needs {n - got} more",
                        "ask for fewer documents (--docs / --val-docs / --test-docs) or give more files",
                    )
            if n is not None and got + len(table) > n:
                table, self._rest = table.slice(0, n - got), table.slice(n - got)
            got += len(table)
            self.docs += len(table)
            yield table
        if got == 0:  # validation after train's documents, and train took every one
            raise UserError(
                f"{self.where} has no documents after the first {self.docs:,}, which train takes",
                "ask for fewer --docs, or give validation text of its own (--val-data-files, --val-fraction)",
            )


class Slice:
    """The one pass over a source: train's documents, then validation's, then test's where there is a
    test split. Every split is opened first, so one that does not exist fails before anything is
    streamed. Where validation or test is the end of the slice by characters ("fraction"), val() or
    test() is None and prepare.py cuts it off train's."""

    def __init__(self, source: Source):
        self.source = source
        self.commit = hub_commit(source) if source.hub else None  # what is streamed, pinned for every split
        self.val_from, self.val_fraction = source.val_rule(), source.val_fraction
        self.train_stream = SplitStream(source, source.split, "train", self.commit)
        self.val_stream = None
        if self.val_from in ("auto", "val_split", "val_data_files"):
            try:
                self.val_stream = SplitStream(source, source.val_split or "validation", "val", self.commit)
                self.val_from = "val_split" if self.val_from == "auto" else self.val_from
            except NoSuchSplit:  # auto, and the dataset has no validation split
                if source.docs is None and source.val_docs is not None:
                    raise none_after_all(source.val_docs) from None
                self.val_from = "after_docs" if source.docs is not None else "fraction"
        if self.val_from == "fraction":
            self.val_fraction = self.val_fraction or DEFAULT_VAL_FRACTION
        self.test_from, self.test_stream = source.test_rule(), None
        if self.test_from in ("test_split", "test_data_files"):
            self.test_stream = SplitStream(source, source.test_split or "test", "test", self.commit)

    def train(self) -> Iterator[pa.Table]:
        n = self.source.docs
        return self.train_stream.take(n, f"--docs {n}")

    def val(self) -> Iterator[pa.Table] | None:
        m = self.source.val_docs
        if self.val_from == "fraction":
            return None
        stream = self.train_stream if self.val_from == "after_docs" else self.val_stream
        return stream.take(m, f"--val-docs {m}")

    def test(self) -> Iterator[pa.Table] | None:
        """After val(): the documents after validation's come from the same pass."""
        k = self.source.test_docs
        if self.test_from in (None, "fraction"):
            return None
        stream = self.train_stream if self.test_from == "after_docs" else self.test_stream
        return stream.take(k, f"--test-docs {k}")


class NoSuchSplit(UserError):
    pass


def _load(path: str, name: str | None = None, **kwargs):
    """The `datasets` call itself."""
    import datasets

    # Transient faults (dropped connections, 429, 5xx) are retried by huggingface_hub and datasets. Their
    # 60 s wait for a rate limit times 20 looks like a hang under a persistent 429, so shorten it.
    datasets.config.STREAMING_READ_RATE_LIMIT_RETRY_INTERVAL = 10
    return datasets.load_dataset(path, name, streaming=True, **kwargs)


@contextmanager
def _without_torch():
    """With torch installed, every IterableDataset imports it (~2 s) to share its epoch counter with
    DataLoader workers; the slice is read in this process alone, so keep torch out while streaming."""
    import datasets

    torch_available, datasets.config.TORCH_AVAILABLE = datasets.config.TORCH_AVAILABLE, False
    try:
        yield
    finally:
        datasets.config.TORCH_AVAILABLE = torch_available


@contextmanager
def _readable(where: str, source: Source):
    """Library errors, while opening or reading a split, as one clear message each."""
    try:
        yield
    except UserError:
        raise
    except ConnectionError as e:  # the builtin one: what datasets raises for the hub
        msg = str(e)
        if "Couldn't reach" in msg:
            offline = " (HF_HUB_OFFLINE is set)" if "OfflineModeIsEnabled" in msg else ""
            raise UserError(
                f"cannot reach the Hugging Face Hub for {source.dataset}{offline}: {msg}", HUB_HINT
            ) from None
        raise UserError(
            f"the connection failed while streaming {where}, after retries: {msg}",
            "run the same command again (it starts the slice afresh), or " + HUB_HINT,
        ) from None
    except (StopIteration, RuntimeError) as e:
        # `datasets` infers the columns from the first file with next(): an empty file ends that early
        if not (isinstance(e, StopIteration) or isinstance(e.__cause__, StopIteration)):
            raise
        raise UserError(f"{where} has no documents (an empty file?)", "give files with documents in them") from None
    except pa.ArrowInvalid as e:
        if "BatchSize must be greater than 0" in str(e):
            raise UserError(
                f"{where} has no documents (an empty parquet file?)", "give files with documents in them"
            ) from None
        raise UserError(
            f"cannot read {where}: {type(e).__name__}: {e}",
            "are the files complete JSON lines (or parquet) with a text field?",
        ) from None
    except (EOFError, gzip.BadGzipFile, zlib.error, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(
            f"cannot read {where}: {type(e).__name__}: {e}",
            "are the files complete JSON lines (or parquet) with a text field?",
        ) from None
    except FileNotFoundError as e:
        raise UserError(
            f"cannot find the data for {where}: {e}",
            "a local folder laid out like a hub repo needs README.md (with configs:) and the data files it names",
        ) from None
    except ValueError as e:
        raise _value_error(e, where, source) from None
    except Exception as e:
        from datasets.exceptions import DatasetNotFoundError
        from huggingface_hub.errors import HfHubHTTPError

        if isinstance(e, DatasetNotFoundError):
            raise UserError(f"cannot find {where}: {e}", "check the hub id in --dataset (e.g. allenai/c4)") from None
        if isinstance(e, HfHubHTTPError):  # a 5xx that outlasted huggingface_hub's retries is not wrapped
            first = str(e).splitlines()[0]
            raise UserError(
                f"the hub kept failing while streaming {where}, after retries: {first}",
                "run the same command again later (it starts the slice afresh), or " + HUB_HINT,
            ) from None
        raise


def _value_error(e: ValueError, where: str, source: Source) -> Exception:
    msg = str(e)
    if msg.startswith("Bad split"):
        split = msg.split(":", 1)[1].split(".", 1)[0].strip()
        there = msg.split("Available splits:", 1)[-1].strip().strip("[]").replace("'", "")
        cls = NoSuchSplit if split == "validation" and source.val_split is None else UserError
        flag = {source.split: "--split", source.test_split: "--test-split"}.get(split, "--val-split")
        return cls(
            f"{source.dataset or 'the files'} has no split {split!r} (splits: {there})",
            f"name one of those with {flag}",
        )
    if "Config name is missing" in msg:
        there = msg.split("configs:", 1)[-1].splitlines()[0].strip().strip("[]").replace("'", "")
        return UserError(
            f"{source.dataset} has several configs and none was chosen (configs: {there})", "name one with --config"
        )
    if "BuilderConfig" in msg or "Couldn't infer" in msg:
        return UserError(
            f"cannot open {where}: {msg.splitlines()[0]}",
            "check --config, and that the folder has the data files its README names",
        )
    return e


def _describe(source: Source, split: str, flag: str | None) -> str:
    if flag is not None:
        files = {"--data-files": source.data_files, "--val-data-files": source.val_data_files}
        return f"{flag} '{files.get(flag, source.test_data_files)}'"
    config = f"config {source.config}, " if source.config else ""
    return f"{source.dataset} ({config}split {split})"


def normalize(table: pa.Table, where: str, text_column: str = "text") -> pa.Table:
    """A batch as SCHEMA: the text column (renamed text), and url and timestamp where the source has them."""
    names = table.column_names
    if text_column not in names:
        raise UserError(
            f"{where} has no {text_column!r} column (columns: {', '.join(names) or 'none'})",
            "name the column that holds the text with --text-column"
            if len(names)
            else 'are you passing the right files? records look like {"text": "..."}',
        )
    text_type = table.column(text_column).type
    if text_type not in (pa.string(), pa.large_string()):
        raise UserError(
            f"{where}: {text_column!r} must be a string in every record, got {text_type}",
            'records look like {"text": "...", ...}; fix or leave out the records whose text is a '
            "number, a list or an object, or name another column with --text-column",
        )
    columns = []
    for name in COLUMNS:
        column = text_column if name == "text" else name
        if column in names and (name == "text" or column != text_column):
            col = table.column(column)  # url and timestamp as strings (a timestamp pyarrow parsed, formatted back)
            columns.append(col if col.type == pa.string() else col.cast(pa.string()))
        else:
            columns.append(pa.nulls(len(table), pa.string()))
    if columns[0].null_count:
        raise UserError(f"{where} has documents without text", f"every record needs a string {text_column!r} field")
    return pa.Table.from_arrays(columns, schema=SCHEMA)
