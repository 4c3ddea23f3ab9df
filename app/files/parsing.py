"""Read uploaded tabular files (CSV, TSV, JSON Lines) into data frames of strings.

TSV is read with quoting switched off, as GLUE's files need (unbalanced `"` inside sentences);
a UTF-8 byte-order mark is dropped.

Files are read in chunks of bounded size, and a line is split off a chunk only once it is whole,
so `scan_table` (the upload check) needs memory for one chunk and one line whatever the file's
size; `read_table` (the worker) also keeps the rows. A problem is reported for the first line
that has one: lines before a bad line are parsed first, whatever the chunk size.

A CSV or TSV file may have no header line (`header=False`): its first line is a row, and its
columns are named `names`, or `column_1` ... `column_n`. Every reader of a stored file is given
the `header` and columns stored with it, so it reads the same columns the upload reported.
"""

import codecs
import contextlib
import csv
import itertools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pandas as pd

FORMATS = ("csv", "tsv", "jsonl")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_SURROGATE = re.compile("[\ud800-\udfff]")  # only a JSON escape such as "\ud800" can make one
_CHUNK_BYTES = 64 * 1024
# Lines end at \r\n, \r or \n, as the csv module and universal newlines have them; str.splitlines
# also splits at these others, so a chunk holding one is split by the slower pattern instead.
_OTHER_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


class FileParseError(ValueError):
    """The file cannot be read as a table; the message says why."""


class FileLimitError(FileParseError):
    """The file is over a configured limit; `code` names the limit."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ColumnNamesError(FileParseError):
    """The column names given for a file with no header line do not fit its width."""


@dataclass(frozen=True)
class ParseLimits:
    """Limits of one read; None is no limit."""

    max_rows: int | None = None
    max_columns: int | None = None
    # Characters of one line (its line break included), of one quoted CSV record over several
    # lines, and of a JSON Lines file's column names together.
    max_line_chars: int | None = None


NO_LIMITS = ParseLimits()


@dataclass(frozen=True)
class TableSummary:
    columns: list[str]
    row_count: int


def format_from_filename(filename: str) -> str | None:
    return _EXTENSIONS.get(Path(filename).suffix.lower())


def column_names(width: int, names: Sequence[str] | None = None) -> list[str]:
    """The columns of a file with no header line: `names`, or column_1 ... column_<width>."""
    if names is None:
        return [f"column_{i}" for i in range(1, width + 1)]
    if len(names) != width:
        raise ColumnNamesError(
            f"{len(names)} column names were given, but the file has {width} columns."
        )
    return list(names)


def read_table(
    path: Path,
    fmt: str,
    limits: ParseLimits = NO_LIMITS,
    header: bool = True,
    names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read a whole file; every cell becomes a string (JSON scalars are written back as text).
    With `header=False` the first line is a row and the columns are `column_names(width, names)`
    (`names` is not used when the file has a header line)."""
    columns, _, rows = _parse(path, fmt, limits, keep_rows=True, header=header, names=names)
    if fmt == "jsonl":
        frame = pd.DataFrame.from_records(rows, columns=columns).fillna("")
    else:
        frame = pd.DataFrame(rows, columns=columns, dtype=str)
    frame.columns = pd.Index(columns)
    return frame


def scan_table(
    path: Path,
    fmt: str,
    limits: ParseLimits = NO_LIMITS,
    header: bool = True,
    names: Sequence[str] | None = None,
) -> TableSummary:
    """Check a file as `read_table` does, keeping only its columns and row count."""
    columns, row_count, _ = _parse(path, fmt, limits, keep_rows=False, header=header, names=names)
    return TableSummary(columns=columns, row_count=row_count)


def scan_stream(
    handle: BinaryIO,
    path: Path,
    fmt: str,
    limits: ParseLimits = NO_LIMITS,
    header: bool = True,
    names: Sequence[str] | None = None,
) -> TableSummary:
    """`scan_table` of a file as it is written to `path`, read from `handle` (an upload checked
    while it arrives); `path` holds at least what was read, for an invalid byte's offset."""
    columns, row_count, _ = _parse(
        path, fmt, limits, keep_rows=False, header=header, names=names, handle=handle
    )
    return TableSummary(columns=columns, row_count=row_count)


def _parse(
    path: Path,
    fmt: str,
    limits: ParseLimits,
    keep_rows: bool,
    header: bool = True,
    names: Sequence[str] | None = None,
    handle: BinaryIO | None = None,
) -> tuple[list[str], int, list[list[str]] | list[dict[str, str]]]:
    rows: list[list[str]] | list[dict[str, str]]
    if fmt == "jsonl" and not header:
        raise FileParseError("A JSON Lines file has no header line; its keys name the columns.")
    try:
        with path.open("rb") if handle is None else contextlib.nullcontext(handle) as handle:
            if fmt == "jsonl":
                columns, row_count, rows = _read_jsonl(handle, limits, keep_rows)
            elif fmt in ("csv", "tsv"):
                columns, row_count, rows = _read_delimited(
                    handle, fmt, limits, keep_rows, header, names
                )
            else:
                raise FileParseError(f"Unknown format '{fmt}'; use one of {', '.join(FORMATS)}.")
    except UnicodeDecodeError as exc:
        offset = _utf8_error_offset(path, exc.start)
        raise FileParseError(f"The file is not valid UTF-8 (byte {offset}).") from exc
    if len(columns) == 0:
        raise FileParseError("The file has no columns.")
    if row_count == 0:
        raise FileParseError("The file has a header but no rows.")
    columns = [str(c) for c in columns]
    if len(set(columns)) != len(columns):
        raise FileParseError("The file has duplicate column names.")
    return columns, row_count, rows


def _too_many_rows(limit: int) -> FileLimitError:
    return FileLimitError(
        "too_many_rows", f"The file has more than {limit} rows; the limit is {limit}."
    )


def _line_too_long(line_number: int, limit: int) -> FileLimitError:
    return FileLimitError(
        "line_too_long", f"Line {line_number} is longer than {limit} characters, the limit."
    )


def _nul_byte(line_number: int) -> FileParseError:
    return FileParseError(f"Line {line_number} contains a NUL byte; is the file UTF-16 or binary?")


def _read_delimited(
    handle: BinaryIO,
    fmt: str,
    limits: ParseLimits,
    keep_rows: bool,
    has_header: bool = True,
    names: Sequence[str] | None = None,
) -> tuple[list[str], int, list[list[str]]]:
    """Strict reading: every row must have as many fields as the header (or the first row)."""
    records = 0  # rows the csv reader has returned, blank ones too
    lines = _lines(handle, limits.max_line_chars)
    if fmt == "csv" and limits.max_line_chars is not None:
        lines = _bounded_records(lines, limits.max_line_chars, lambda: records)
    reader = csv.reader(
        itertools.chain.from_iterable(lines),
        delimiter="\t" if fmt == "tsv" else ",",
        quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL,
        strict=fmt == "csv",
    )
    max_rows = limits.max_rows
    header: list[str] | None = None
    width = 0
    row_count = 0
    rows: list[list[str]] = []
    has_text = False
    try:
        for records, row in enumerate(reader, start=1):  # noqa: B007 (read by the closure)
            if not row:
                continue  # blank lines, leading ones included, are skipped
            if header is None:
                width = len(row)
                if limits.max_columns is not None and width > limits.max_columns:
                    raise FileLimitError(
                        "too_many_columns",
                        f"The file has {width} columns; the limit is {limits.max_columns}.",
                    )
                if has_header:
                    header = row
                    if len(set(header)) != width:
                        raise FileParseError("The file has duplicate column names.")
                    has_text = any(name.strip() for name in header)
                    continue
                header = column_names(width, names)
            if len(row) != width:
                raise FileParseError(
                    f"Line {reader.line_num} has {len(row)} fields; the "
                    f"{'header' if has_header else 'first line'} has "
                    f"{width}. Is the delimiter right ({fmt.upper()})?"
                )
            row_count += 1
            if max_rows is not None and row_count > max_rows:
                raise _too_many_rows(max_rows)
            if keep_rows:
                rows.append(row)
            if not has_text:
                has_text = any(field.strip() for field in row)
    except csv.Error as exc:
        raise FileParseError(f"Line {reader.line_num}: {exc}.") from exc
    if header is None:
        raise FileParseError("The file is empty.")
    if not has_text:
        raise FileParseError("The file is empty (it holds only whitespace).")
    return header, row_count, rows


def _read_jsonl(
    handle: BinaryIO, limits: ParseLimits, keep_rows: bool
) -> tuple[list[str], int, list[dict[str, str]]]:
    columns: dict[str, None] = {}  # in order of first appearance, as pandas orders them
    names_chars = 0
    row_count = 0
    records: list[dict[str, str]] = []
    lines = itertools.chain.from_iterable(_lines(handle, limits.max_line_chars))
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FileParseError(f"Line {line_number} is not valid JSON: {exc.msg}.") from exc
        except RecursionError as exc:
            raise FileParseError(f"Line {line_number} is nested too deeply.") from exc
        except ValueError as exc:  # e.g. an integer of more than 4300 digits
            raise FileParseError(f"Line {line_number} is not valid JSON: {exc}.") from exc
        if not isinstance(record, dict):
            raise FileParseError(f"Line {line_number} is not a JSON object.")
        try:
            cells = {str(k): _cell_text(v) for k, v in record.items()}
        except RecursionError as exc:
            # json.dumps of a value nested nearly as deep as json.loads allows
            raise FileParseError(f"Line {line_number} is nested too deeply.") from exc
        if "\\u" in line and any(_SURROGATE.search(t) for c in cells.items() for t in c):
            raise FileParseError(
                f"Line {line_number} has an unpaired surrogate escape (\\ud800-\\udfff); "
                "the text is not valid Unicode."
            )
        row_count += 1
        if limits.max_rows is not None and row_count > limits.max_rows:
            raise _too_many_rows(limits.max_rows)
        if not columns.keys() >= cells.keys():
            new = [name for name in cells if name not in columns]
            columns.update(dict.fromkeys(new))
            names_chars += sum(map(len, new))
            _check_jsonl_columns(line_number, len(columns), names_chars, limits)
        if keep_rows:
            records.append(cells)
    if row_count == 0:
        raise FileParseError("The file is empty.")
    return list(columns), row_count, records


def _check_jsonl_columns(line_number: int, count: int, chars: int, limits: ParseLimits) -> None:
    if limits.max_columns is not None and count > limits.max_columns:
        raise FileLimitError(
            "too_many_columns",
            f"Line {line_number} brings the file's columns to {count}; "
            f"the limit is {limits.max_columns}.",
        )
    if limits.max_line_chars is not None and chars > limits.max_line_chars:
        raise FileLimitError(
            "too_many_columns",
            f"Line {line_number} brings the file's column names to more than "
            f"{limits.max_line_chars} characters together, the limit.",
        )


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)


def _lines(handle: BinaryIO, max_line_chars: int | None) -> Iterator[list[str]]:
    """The file's whole lines, line breaks kept, a list per chunk read.

    A line longer than `max_line_chars` is an error as soon as that much of it is read, and a
    line with a NUL byte once it is whole; lines before either are yielded first. Invalid UTF-8
    raises UnicodeDecodeError, after the whole lines before it.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    # The start of a line that the next chunk goes on with, in parts: a long line is joined
    # once, when its end comes, not once per chunk.
    carry: list[str] = []
    carry_chars = 0
    number = 0  # lines yielded so far
    # A chunk no longer than a line may be, so that a quoted CSV field running on over many
    # short lines is noticed soon after it passes the limit (see _bounded_records).
    chunk_bytes = min(_CHUNK_BYTES, max_line_chars or _CHUNK_BYTES)
    raw = handle.read(chunk_bytes)
    while len(raw) < len(codecs.BOM_UTF8) and (more := handle.read(chunk_bytes)):
        raw += more
    eof = not raw
    raw = raw.removeprefix(codecs.BOM_UTF8)
    while True:
        failure: UnicodeDecodeError | None = None
        pending = decoder.getstate()[0]
        try:
            text = decoder.decode(raw, final=eof)
        except UnicodeDecodeError as exc:
            failure = exc
            text = (pending + raw)[: exc.start].decode("utf-8")
        if (
            not eof
            and failure is None
            and "\n" not in text
            and "\r" not in text
            and not (carry and carry[-1].endswith("\r"))
        ):
            carry.append(text)  # still inside one line
            carry_chars += len(text)
        else:
            chunk = "".join(carry) + text
            lines = _split_lines(chunk) if chunk else []
            carry, carry_chars = [], 0
            if lines and (failure or not eof) and not lines[-1].endswith("\n"):
                # cut off (by the chunk or by a bad byte), or a \r that a \n may follow
                carry.append(lines.pop())
                carry_chars = len(carry[0])
            bad = _first_bad_line(lines, chunk, max_line_chars)
            if bad is not None:
                index, error = bad
                if index:
                    yield lines[:index]
                raise error(number + index + 1)
            if lines:
                yield lines
                number += len(lines)
        if max_line_chars is not None and carry_chars > max_line_chars:
            raise _line_too_long(number + 1, max_line_chars)
        if failure is not None:
            raise failure
        if eof:
            return
        raw = handle.read(chunk_bytes)
        eof = not raw


def _split_lines(text: str) -> list[str]:
    if _OTHER_BREAKS.search(text) is None:
        return text.splitlines(keepends=True)
    return _LINE.findall(text)


def _first_bad_line(
    lines: list[str], chunk: str, max_line_chars: int | None
) -> tuple[int, Callable[[int], FileParseError]] | None:
    """The first line too long or with a NUL byte (too long first: a long line's start is
    refused before its end is read)."""
    if not lines:
        return None
    long_at = nul_at = len(lines)
    if max_line_chars is not None and max(map(len, lines)) > max_line_chars:
        long_at = next(i for i, line in enumerate(lines) if len(line) > max_line_chars)
    if "\0" in chunk:
        nul_at = next((i for i, line in enumerate(lines) if "\0" in line), len(lines))
    if long_at < len(lines) and long_at <= nul_at:
        limit = max_line_chars or 0
        return long_at, lambda line_number: _line_too_long(line_number, limit)
    if nul_at < len(lines):
        return nul_at, _nul_byte
    return None


def _bounded_records(
    chunks: Iterator[list[str]], max_chars: int, records: Callable[[], int]
) -> Iterator[list[str]]:
    """Refuse a quoted CSV field that runs on over many lines (an unbalanced `"` makes one):
    the csv reader would hold the whole record. `records()` counts the rows returned so far;
    when it has not moved during a chunk, the whole chunk belongs to the one open record."""
    seen = -1
    open_chars = last_chars = 0
    number = 0
    for lines in chunks:
        now = records()
        if now == seen:
            open_chars += last_chars
        else:
            seen, open_chars = now, 0
        if open_chars > max_chars:
            raise FileLimitError(
                "line_too_long",
                f"Line {number} is inside a quoted field over more than {max_chars} "
                'characters, the limit; is a closing " missing?',
            )
        last_chars = sum(map(len, lines))
        number += len(lines)
        yield lines


def _utf8_error_offset(path: Path, fallback: int) -> int:
    """Where in the file the first invalid UTF-8 byte is (a decode error's own offset is per chunk)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(1 << 20)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                return offset - pending + exc.start
            if not chunk:
                return fallback
            offset += len(chunk)


def iter_records(
    path: Path, fmt: str, header: bool = True, names: Sequence[str] | None = None
) -> Iterator[dict[str, str]]:
    """The rows of a stored file (one that passed the upload checks) one at a time, as
    `read_table` reads them: memory stays flat whatever the file's size."""
    with path.open("rb") as handle:
        lines = itertools.chain.from_iterable(_lines(handle, None))
        if fmt == "jsonl":
            for line in lines:
                if line.strip():
                    yield {str(k): _cell_text(v) for k, v in json.loads(line).items()}
            return
        reader = csv.reader(
            lines,
            delimiter="\t" if fmt == "tsv" else ",",
            quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL,
        )
        columns: list[str] | None = None
        for row in reader:
            if not row:
                continue
            if columns is None:
                columns = row if header else column_names(len(row), names)
                if header:
                    continue
            yield dict(zip(columns, row, strict=True))
