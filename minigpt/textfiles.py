"""Plain text files as documents: a whole file, a paragraph, or a line is one document.

The bytes are read as they are and checked as UTF-8; nothing is translated. `datasets`' text builder
opens its files in text mode, which turns "\\r\\n" and "\\r" into "\\n", and reads a file whole in
`document` mode (datasets/packaged_modules/text/text.py), so a CRLF file would not round-trip and an
encoding error could not be placed in the file. Here the files are read in blocks of BLOCK_BYTES,
documents are cut out of a block with numpy, and each block becomes an Arrow string array over the
same buffer: memory holds a block (or, with --doc-split file, the largest file), whatever the size of
the source.

  file       a file is one document, verbatim
  paragraph  a run of non-blank lines is one document, its line ends kept; blank lines (nothing but
             spaces, tabs and line ends) separate documents and belong to none
  line       a non-blank line is one document, its line end ("\\n" or "\\r\\n") kept
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from .errors import UserError

DOC_SPLITS = ("file", "paragraph", "line")
BLOCK_BYTES = 8 << 20  # read size; a block's documents become one Arrow batch
MAX_DOC_BYTES = (1 << 31) - 1  # an Arrow string array (int32 offsets) holds at most this much text
_BLANK = np.zeros(256, bool)
_BLANK[[ord(" "), ord("\t"), ord("\r"), ord("\n")]] = True


def decode(data: bytes, path: Path, offset: int) -> str:
    """data as UTF-8; otherwise a UserError that names the file and the byte offset of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        at = offset + e.start
        raise UserError(f"{path} is not UTF-8 text: byte {at:,} (0x{data[e.start]:02x}) is not valid UTF-8",
                        "convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8 FILE), or leave it out") from None


def _strings(data: bytes, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """The documents data[starts[i]:ends[i]] as one Arrow string array (one copy of their bytes)."""
    if len(starts) == 0:
        return pa.array([], pa.string())
    view = np.frombuffer(data, np.uint8)
    mark = np.zeros(len(view) + 1, np.int8)  # +1 at each start, -1 at each end: inside a document where > 0
    mark[starts] += 1  # (starts are distinct, and so are ends: each assignment sees no repeated index)
    mark[ends] -= 1
    inside = np.cumsum(mark[:-1], dtype=np.int64) > 0
    body = view[inside]
    lengths = (ends - starts).astype(np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    return pa.StringArray.from_buffers(len(starts), pa.py_buffer(offsets), pa.py_buffer(body))


def _cuts(data: bytes, doc_split: str, final: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """(starts, ends) of the complete documents in data, and where the unfinished rest begins."""
    view = np.frombuffer(data, np.uint8)
    line_ends = np.flatnonzero(view == 10) + 1  # one past each "\n"
    if final and (len(line_ends) == 0 or line_ends[-1] != len(view)) and len(view):
        line_ends = np.append(line_ends, len(view))  # the last line needs no "\n" at the end of a file
    if len(line_ends) == 0:  # no complete line yet
        return line_ends, line_ends, 0
    rest = int(line_ends[-1])
    line_starts = np.concatenate(([0], line_ends[:-1])).astype(np.int64)
    # a line is blank when it holds nothing but spaces, tabs and line ends
    solid = np.concatenate(([0], np.cumsum(~_BLANK[view[:rest]], dtype=np.int64)))
    blank = solid[line_ends] == solid[line_starts]
    if doc_split == "line":
        return line_starts[~blank], line_ends[~blank], rest
    # paragraphs: a run of non-blank lines; one still open at the block's end waits for the next block
    edge = np.diff(np.concatenate(([0], (~blank).astype(np.int8), [0])))
    first, last = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1) - 1
    starts, ends = line_starts[first], line_ends[last]
    if not final and len(first) and (len(blank) == 0 or not blank[-1]):
        rest = int(starts[-1])  # the last paragraph may go on in the next block
        starts, ends = starts[:-1], ends[:-1]
    return starts, ends, rest


def read_documents(path: Path, doc_split: str, block_bytes: int = BLOCK_BYTES) -> Iterator[pa.Array]:
    """The documents of one file, as Arrow string arrays of a block's worth each."""
    path = Path(path)
    with open(path, "rb") as f:
        if doc_split == "file":
            size = path.stat().st_size
            if size > MAX_DOC_BYTES:
                raise UserError(f"{path} is {size:,} bytes, more than one document can hold ({MAX_DOC_BYTES:,})",
                                "split it with --doc-split paragraph or --doc-split line")
            text = decode(f.read(), path, 0)
            if text.strip():
                yield pa.array([text], pa.string())
            return
        offset, carry = 0, b""
        while True:
            block = f.read(block_bytes)
            data = carry + block
            starts, ends, rest = _cuts(data, doc_split, final=not block)
            decode(data[:rest], path, offset)  # checked only: the documents stay bytes
            if len(starts):
                yield _strings(data, starts, ends)
            offset += rest
            carry = data[rest:]
            if not block:
                if carry.strip():  # only possible for an unfinished paragraph at the very end: never
                    raise AssertionError("text left over at the end of the file")
                return
