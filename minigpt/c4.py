"""The C4 source: which documents make up the slice, and streaming them once with `datasets`.

Three ways to name the data, all read through the same `datasets.load_dataset(..., streaming=True)`:
  - a hub id (default `allenai/c4`, config `en`): the real hub, or whatever HF_ENDPOINT points at;
  - a local folder laid out like the hub repo (README.md with `configs:` plus `en/c4-*.json.gz`);
  - local C4-format files (`--data-files`): json, jsonl, json.gz or parquet.
Train documents are the first N of the `train` split, validation the first M of `validation`
(or of `--val-data-files`, or, with `--data-files` alone, the M documents after the N train ones).
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from .errors import UserError

DEFAULT_DATASET = "allenai/c4"
DEFAULT_CONFIG = "en"
COLUMNS = ("text", "url", "timestamp")
SCHEMA = pa.schema([(name, pa.string()) for name in COLUMNS])
BATCH_DOCS = 1000  # documents per Arrow batch from `datasets`: ~2 MB of C4 text, cache friendly
MAX_DEFAULT_VAL_DOCS = 10_000

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
    "work offline with local files: --data-files 'DIR/en/c4-train.*.json.gz' (and --val-data-files), "
    "or --dataset DIR for a local folder laid out like the hub repo, or set HF_ENDPOINT to a reachable hub mirror"
)
_EXTENSIONS = {".json": "json", ".jsonl": "json", ".json.gz": "json", ".jsonl.gz": "json", ".parquet": "parquet"}


@dataclass(frozen=True)
class Source:
    """Everything that decides which documents form the slice, as the user named them.

    Globs are kept as (absolute) patterns and expanded only when streaming, so a rerun that the frozen
    slice can serve needs neither the files nor the network.
    """

    dataset: str | None  # hub id or absolute path of a local mirror folder; None with data_files
    config: str | None
    data_files: str | None  # absolute glob
    val_data_files: str | None
    docs: int  # N train documents
    val_docs: int  # M validation documents

    @property
    def val_from(self) -> str:
        if self.val_data_files:
            return "val_data_files"
        return "train_stream_after_docs" if self.data_files else "validation_split"

    def to_json(self) -> dict:
        return {**asdict(self), "val_from": self.val_from}

    def files(self, split: str) -> list[str] | None:
        """The local files of a split, sorted; None where the split comes from --dataset."""
        pattern, flag = (self.data_files, "--data-files") if split == "train" else (self.val_data_files, "--val-data-files")
        return list(_expand(pattern, flag)) if pattern else None

    def default_name(self) -> str:
        """Folder name under data/: the source and N (c4-en-3000, mirror-en-3000, ...)."""
        if self.data_files:
            stem = Path(self.data_files).name.split(".json")[0].split(".parquet")[0]
            stem = re.sub(r"[*?\[\]]+", "", stem).strip(".-_") or Path(self.data_files).parent.name
            base = f"{stem}-files"
        else:
            base = Path(self.dataset).name if os.path.isabs(self.dataset) else self.dataset.split("/")[-1]
            base = f"{base}-{self.config}"
        return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{base}-{self.docs}").strip("_")


def resolve_source(dataset: str | None, config: str | None, data_files: str | None, val_data_files: str | None,
                   docs: int, val_docs: int | None) -> Source:
    """Check the command line's source arguments and turn them into a Source."""
    if docs < 1:
        raise UserError(f"--docs must be at least 1 (got {docs})", "ask for the number of train documents, e.g. --docs 3000")
    if val_docs is None:
        val_docs = min(max(docs // 10, 1), MAX_DEFAULT_VAL_DOCS)
    if val_docs < 1:
        raise UserError(f"--val-docs must be at least 1 (got {val_docs})",
                        "validation needs documents of its own; leave --val-docs out for N/10")
    if data_files is not None and config is not None:
        raise UserError("--config applies to --dataset, not to --data-files",
                        "leave --config out with local files (they have no configs)")
    config = config or DEFAULT_CONFIG
    if dataset is not None and data_files is not None:
        raise UserError("--dataset and --data-files both name the train documents",
                        "give one of them: a hub id or mirror folder in --dataset, or local files in --data-files")
    val_files = _absolute(val_data_files) if val_data_files else None
    if data_files:
        return Source(None, None, _absolute(data_files), val_files, docs, val_docs)
    dataset = dataset or DEFAULT_DATASET
    local = os.path.expanduser(dataset)
    if os.path.isdir(local) or local.startswith((".", "/")) or dataset.count("/") > 1:  # a path, not owner/name
        dataset = os.path.abspath(local)
    return Source(dataset, config, None, val_files, docs, val_docs)


def _absolute(pattern: str) -> str:
    return os.path.abspath(os.path.expanduser(pattern))


def _expand(pattern: str, flag: str) -> tuple[str, ...]:
    files = sorted({p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)})
    if not files:
        raise UserError(f"{flag} '{pattern}' matches no file",
                        "check the path; quote the glob so the shell passes it on, e.g. 'DIR/c4-train.*.json.gz'")
    kinds = {_kind(f, flag) for f in files}
    if len(kinds) > 1:
        raise UserError(f"{flag} '{pattern}' mixes json and parquet files", "give files of one format per flag")
    return tuple(files)


def _kind(path: str, flag: str) -> str:
    for ext, kind in _EXTENSIONS.items():
        if path.endswith(ext):
            return kind
    raise UserError(f"{flag}: {path} is not a C4-format file",
                    "files must be JSON lines (.json, .jsonl, .json.gz, .jsonl.gz) or .parquet with a 'text' column")


def _load(source: Source, split: str):
    """The `datasets` call itself; the hub id goes through unchanged, so HF_ENDPOINT and mirrors work."""
    import datasets

    # Transient faults (dropped connections, 429, 5xx) are retried by huggingface_hub and datasets. Their
    # 60 s wait for a rate limit times 20 looks like a hang under a persistent 429, so shorten it.
    datasets.config.STREAMING_READ_RATE_LIMIT_RETRY_INTERVAL = 10
    files = source.files("train" if split == "train" else "val")
    if files is None and os.path.isabs(source.dataset) and not os.path.isdir(source.dataset):
        raise UserError(f"--dataset {source.dataset}: no such folder",
                        "give a hub id such as allenai/c4, or a folder laid out like the hub repo (README.md + en/*.json.gz)")
    if files is None:
        return datasets.load_dataset(source.dataset, source.config, split=split, streaming=True)
    return datasets.load_dataset(_kind(files[0], "data files"), data_files={split: files}, split=split, streaming=True)


def _tables(source: Source, split: str) -> Iterator[pa.Table]:
    """Arrow batches of the split, as text/url/timestamp strings, with library errors made readable."""
    import datasets  # imported here, not at the top: a second, paid only when the slice is streamed

    where = _describe(source, split)
    # With torch installed, every IterableDataset imports it (~2 s) to share its epoch counter with
    # DataLoader workers; the slice is read in this process alone, so keep torch out while streaming.
    torch_available, datasets.config.TORCH_AVAILABLE = datasets.config.TORCH_AVAILABLE, False
    try:
        ds = _load(source, split)
        for table in ds.with_format("arrow").iter(batch_size=BATCH_DOCS):
            yield _normalize(table, where)
    except UserError:
        raise
    except ConnectionError as e:  # the builtin one: what datasets raises for the hub
        msg = str(e)
        if "Couldn't reach" in msg:
            offline = " (HF_HUB_OFFLINE is set)" if "OfflineModeIsEnabled" in msg else ""
            raise UserError(f"cannot reach the Hugging Face Hub for {source.dataset}{offline}: {msg}", HUB_HINT) from None
        raise UserError(f"the connection failed while streaming {where}, after retries: {msg}",
                        "run the same command again (it starts the slice afresh), or " + HUB_HINT) from None
    except (StopIteration, RuntimeError) as e:
        # `datasets` infers the columns from the first file with next(): an empty file ends that early
        if not (isinstance(e, StopIteration) or isinstance(e.__cause__, StopIteration)):
            raise
        raise UserError(f"{where} has no documents (an empty file?)", "give files with C4 records in them") from None
    except pa.ArrowInvalid as e:
        if "BatchSize must be greater than 0" in str(e):
            raise UserError(f"{where} has no documents (an empty parquet file?)", "give files with C4 records in them") from None
        raise UserError(f"cannot read {where}: {type(e).__name__}: {e}",
                        "are the files complete C4-format JSON lines (or parquet) with a 'text' field?") from None
    except (EOFError, gzip.BadGzipFile, zlib.error, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {where}: {type(e).__name__}: {e}",
                        "are the files complete C4-format JSON lines (or parquet) with a 'text' field?") from None
    except FileNotFoundError as e:
        raise UserError(f"cannot find the data for {where}: {e}",
                        "a local mirror folder needs README.md with configs: and the data files it names") from None
    except ValueError as e:
        msg = str(e)
        if "BuilderConfig" in msg or "Bad split" in msg or "Couldn't infer" in msg:
            raise UserError(f"cannot open {where}: {msg}",
                            "check --config, and that the folder has the train and validation files its README names") from None
        raise
    except Exception as e:
        from datasets.exceptions import DatasetNotFoundError
        from huggingface_hub.errors import HfHubHTTPError

        if isinstance(e, DatasetNotFoundError):
            raise UserError(f"cannot find {where}: {e}", "check the hub id in --dataset (e.g. allenai/c4)") from None
        if isinstance(e, HfHubHTTPError):  # a 5xx that outlasted huggingface_hub's retries is not wrapped
            first = str(e).splitlines()[0]
            raise UserError(f"the hub kept failing while streaming {where}, after retries: {first}",
                            "run the same command again later (it starts the slice afresh), or " + HUB_HINT) from None
        raise
    finally:
        datasets.config.TORCH_AVAILABLE = torch_available


def _describe(source: Source, split: str) -> str:
    if split == "train" and source.data_files:
        return f"--data-files '{source.data_files}'"
    if split == "validation" and source.val_data_files:
        return f"--val-data-files '{source.val_data_files}'"
    return f"{source.dataset} (config {source.config}, split {split})"


def _normalize(table: pa.Table, where: str) -> pa.Table:
    names = table.column_names
    if "text" not in names:
        raise UserError(f"{where} has no 'text' column (columns: {', '.join(names) or 'none'})",
                        "are you passing the right files? C4 records look like {\"text\": ..., \"url\": ..., \"timestamp\": ...}")
    text_type = table.column("text").type
    if text_type not in (pa.string(), pa.large_string()):
        raise UserError(f"{where}: 'text' must be a string in every record, got {text_type}",
                        "C4 records look like {\"text\": \"...\", \"url\": ..., \"timestamp\": ...}; fix or leave out "
                        "the records whose text is a number, a list or an object")
    columns = []
    for name in COLUMNS:
        if name in names:  # url and timestamp: kept as strings (a timestamp pyarrow parsed is formatted back)
            col = table.column(name)
            columns.append(col if col.type == pa.string() else col.cast(pa.string()))
        else:
            columns.append(pa.nulls(len(table), pa.string()))
    if columns[0].null_count:
        raise UserError(f"{where} has documents without text", "every record needs a string 'text' field")
    return pa.Table.from_arrays(columns, schema=SCHEMA)


class DocStream:
    """One pass over a split's documents, handed out in consecutive slices of exact sizes."""

    def __init__(self, source: Source, split: str):
        self.where = _describe(source, split)
        self._tables = _tables(source, split)
        self._rest: pa.Table | None = None
        self.docs = 0  # documents handed out so far

    def take(self, n: int, what: str) -> Iterator[pa.Table]:
        got = 0
        while got < n:
            table, self._rest = self._rest, None
            if table is None:
                table = next(self._tables, None)
                if table is None:
                    raise UserError(f"{self.where} has only {self.docs} documents, but {what} needs {n - got} more",
                                    "ask for fewer documents (--docs / --val-docs) or give more files")
            if got + len(table) > n:
                table, self._rest = table.slice(0, n - got), table.slice(n - got)
            got += len(table)
            self.docs += len(table)
            yield table


def slice_streams(source: Source) -> list[tuple[str, Iterator[pa.Table]]]:
    """(split name, Arrow batches) for train then val: each exactly the documents of the slice."""
    train = DocStream(source, "train")
    if source.val_from == "train_stream_after_docs":
        val = train
    else:
        val = DocStream(source, "validation")
    return [("train", train.take(source.docs, f"--docs {source.docs}")),
            ("val", val.take(source.val_docs, f"--val-docs {source.val_docs}"))]
