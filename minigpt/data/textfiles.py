"""Plain text files as documents: a whole file, a paragraph, or a line is one document.

The bytes are read as they are and checked as UTF-8; nothing is translated. `datasets`' text builder
opens its files in text mode, which turns "\\r\\n" and "\\r" into "\\n", and reads a file whole in
`document` mode (datasets/packaged_modules/text/text.py), so a CRLF file would not round-trip and an
encoding error could not be placed in the file. Here the files are read in blocks of BLOCK_BYTES,
lines and documents are found in a block with numpy, the documents' bytes become one Arrow string
array (a copy per run of adjacent documents), and Arrow checks them as UTF-8 in C++: several times
faster than a Python str per block (BENCHMARKS.md). Memory holds a block (or, with --doc-split file, the
largest file), whatever the size of the source.

  file       a file is one document, verbatim
  paragraph  a run of non-blank lines is one document, its line ends kept; blank lines (nothing but
             spaces, tabs and line ends) separate documents and belong to none
  line       a non-blank line is one document, its line end ("\\n" or "\\r\\n") kept
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from ..errors import UserError

DOC_SPLITS = ("file", "paragraph", "line")
BLOCK_BYTES = 8 << 20  # read size; a block's documents become one Arrow batch (tests make it a few bytes)
MAX_DOC_BYTES = (1 << 31) - 1  # an Arrow string array (int32 offsets) holds at most this much text
_BLANK = np.zeros(256, bool)
_BLANK[[ord(" "), ord("\t"), ord("\r"), ord("\n")]] = True
_SOLID = re.compile(rb"[^ \t\r\n]")  # a byte that is not blank


def utf8_error(data: bytes, path: Path, offset: int) -> UserError:
    """The error for a file that is not UTF-8: its name, and the byte offset of the first bad byte."""
    try:
        data.decode("utf-8")
        at, byte = offset, None
    except UnicodeDecodeError as e:
        at, byte = offset + e.start, data[e.start]
    what = f"byte {at:,} (0x{byte:02x}) is not valid UTF-8" if byte is not None else "it is not valid UTF-8"
    return UserError(
        f"{path} is not UTF-8 text: {what}",
        "convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8 FILE), or leave it out",
    )


def _strings(data: bytes, starts: np.ndarray, ends: np.ndarray, path: Path, offset: int) -> pa.Array:
    """The documents data[starts[i]:ends[i]] as one Arrow string array, checked as UTF-8. Documents that
    follow each other with no gap are copied as one piece: a copy per run of them, not per document."""
    lengths = ends - starts
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    gap = np.flatnonzero(starts[1:] != ends[:-1]) + 1  # documents that do not start where the last ended
    first, last = np.concatenate(([0], gap)), np.concatenate((gap, [len(starts)])) - 1
    view = memoryview(data)
    body = b"".join([view[a:b] for a, b in zip(starts[first].tolist(), ends[last].tolist())])
    arr = pa.StringArray.from_buffers(len(starts), pa.py_buffer(offsets), pa.py_buffer(body))
    try:
        arr.validate(full=True)  # UTF-8 included, in Arrow's C++
    except pa.ArrowInvalid:
        raise utf8_error(data, path, offset) from None
    return arr


def _cuts(data: bytes, doc_split: str, final: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """(starts, ends) of the complete documents in data, and where the unfinished rest begins."""
    view = np.frombuffer(data, np.uint8)
    line_ends = np.flatnonzero(view == 10) + 1  # one past each "\n"
    if final and len(view) and (len(line_ends) == 0 or line_ends[-1] != len(view)):
        line_ends = np.append(line_ends, len(view))  # the last line needs no "\n" at the end of a file
    if len(line_ends) == 0:  # no complete line yet
        return line_ends, line_ends, 0
    rest = int(line_ends[-1])
    line_starts = np.concatenate(([0], line_ends[:-1])).astype(np.int64)
    # a line is blank when it holds nothing but spaces, tabs and line ends (lines are never empty)
    blank = ~np.logical_or.reduceat(~_BLANK[view[:rest]], line_starts)
    if doc_split == "line":
        return line_starts[~blank], line_ends[~blank], rest
    # paragraphs: a run of non-blank lines; one still open at the block's end waits for the next block
    edge = np.diff(np.concatenate(([0], (~blank).astype(np.int8), [0])))
    first, last = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1) - 1
    starts, ends = line_starts[first], line_ends[last]
    if not final and len(first) and not blank[-1]:
        rest = int(starts[-1])  # the last paragraph may go on in the next block
        starts, ends = starts[:-1], ends[:-1]
    return starts, ends, rest


def read_documents(path: Path, doc_split: str, block_bytes: int | None = None) -> Iterator[pa.Array]:
    """The documents of one file, as Arrow string arrays of a block's worth each (BLOCK_BYTES unless told)."""
    path, block_bytes = Path(path), block_bytes or BLOCK_BYTES
    with open(path, "rb") as f:
        if doc_split == "file":
            size = path.stat().st_size
            if size > MAX_DOC_BYTES:
                raise UserError(
                    f"{path} is {size:,} bytes, more than one document can hold ({MAX_DOC_BYTES:,})",
                    "split it with --doc-split paragraph or --doc-split line",
                )
            data = f.read()
            if _SOLID.search(data):  # a file of nothing but blanks is no document
                yield _strings(data, np.array([0]), np.array([len(data)]), path, 0)
            return
        offset, carry = 0, b""
        while True:
            block = f.read(block_bytes)
            data = carry + block if carry else block
            starts, ends, rest = _cuts(data, doc_split, final=not block)
            if len(starts):
                yield _strings(data, starts, ends, path, offset)
            offset += rest
            carry = data[rest:]
            if not block:
                return
