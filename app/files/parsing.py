"""Read uploaded tabular files (CSV, TSV, JSON Lines) into data frames of strings.

TSV is read with quoting switched off, as GLUE's files need (unbalanced `"` inside sentences);
a UTF-8 byte-order mark is dropped.
"""

import codecs
import csv
import json
import re
from pathlib import Path

import pandas as pd

FORMATS = ("csv", "tsv", "jsonl")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_SURROGATE = re.compile("[\ud800-\udfff]")  # only a JSON escape such as "\ud800" can make one


class FileParseError(ValueError):
    """The file cannot be read as a table; the message says why."""


def format_from_filename(filename: str) -> str | None:
    return _EXTENSIONS.get(Path(filename).suffix.lower())


def read_table(path: Path, fmt: str) -> pd.DataFrame:
    """Read a whole file; every cell becomes a string (JSON scalars are written back as text)."""
    try:
        if fmt == "jsonl":
            frame = _read_jsonl(path)
        elif fmt in ("csv", "tsv"):
            frame = _read_delimited(path, fmt)
        else:
            raise FileParseError(f"Unknown format '{fmt}'; use one of {', '.join(FORMATS)}.")
    except UnicodeDecodeError as exc:
        offset = _utf8_error_offset(path, exc.start)
        raise FileParseError(f"The file is not valid UTF-8 (byte {offset}).") from exc
    if len(frame.columns) == 0:
        raise FileParseError("The file has no columns.")
    if len(frame) == 0:
        raise FileParseError("The file has a header but no rows.")
    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        raise FileParseError("The file has duplicate column names.")
    frame.columns = pd.Index(columns)
    return frame


def _read_delimited(path: Path, fmt: str) -> pd.DataFrame:
    """Strict reading: every row must have as many fields as the header."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(
            handle,
            delimiter="\t" if fmt == "tsv" else ",",
            quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL,
            strict=fmt == "csv",
        )
        try:
            header = next((row for row in reader if row), None)  # leading blank lines skipped
            if not header:
                raise FileParseError("The file is empty.")
            if any("\0" in name for name in header):
                raise FileParseError(
                    f"Line {reader.line_num} contains a NUL byte; is the file UTF-16 or binary?"
                )
            if len(set(header)) != len(header):
                raise FileParseError("The file has duplicate column names.")
            rows = []
            for row in reader:
                if not row:
                    continue
                if any("\0" in field for field in row):
                    raise FileParseError(
                        f"Line {reader.line_num} contains a NUL byte; is the file UTF-16 or binary?"
                    )
                if len(row) != len(header):
                    raise FileParseError(
                        f"Line {reader.line_num} has {len(row)} fields; the header has "
                        f"{len(header)}. Is the delimiter right ({fmt.upper()})?"
                    )
                rows.append(row)
        except csv.Error as exc:
            raise FileParseError(f"Line {reader.line_num}: {exc}.") from exc
    if not any(field.strip() for row in [header, *rows] for field in row):
        raise FileParseError("The file is empty (it holds only whitespace).")
    return pd.DataFrame(rows, columns=header, dtype=str)


def _read_jsonl(path: Path) -> pd.DataFrame:
    records: list[dict[str, str]] = []
    with path.open(encoding="utf-8-sig") as handle:
        for line_number, line in enumerate(handle, start=1):
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
            records.append(cells)
    if not records:
        raise FileParseError("The file is empty.")
    return pd.DataFrame.from_records(records).fillna("")


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
