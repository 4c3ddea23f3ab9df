"""Read uploaded tabular files (CSV, TSV, JSON Lines) into data frames of strings.

TSV is read with quoting switched off, as GLUE's files need (unbalanced `"` inside sentences);
a UTF-8 byte-order mark is dropped.
"""

import csv
import json
from pathlib import Path

import pandas as pd

FORMATS = ("csv", "tsv", "jsonl")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


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
        raise FileParseError(f"The file is not valid UTF-8 (byte {exc.start}).") from exc
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
            header = next(reader, None)
            if not header:
                raise FileParseError("The file is empty.")
            if len(set(header)) != len(header):
                raise FileParseError("The file has duplicate column names.")
            rows = []
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise FileParseError(
                        f"Line {reader.line_num} has {len(row)} fields; the header has "
                        f"{len(header)}. Is the delimiter right ({fmt.upper()})?"
                    )
                rows.append(row)
        except csv.Error as exc:
            raise FileParseError(f"Line {reader.line_num}: {exc}.") from exc
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
            if not isinstance(record, dict):
                raise FileParseError(f"Line {line_number} is not a JSON object.")
            records.append({str(k): _cell_text(v) for k, v in record.items()})
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
