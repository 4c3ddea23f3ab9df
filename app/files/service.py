"""Uploading and reading dataset files."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import ApiError, NotFound
from app.files.parsing import (
    FORMATS,
    ColumnNamesError,
    FileLimitError,
    FileParseError,
    ParseLimits,
    TableSummary,
    format_from_filename,
    scan_stream,
    scan_table,
)
from app.files.repository import FileRepository
from app.files.storage import UploadTooLarge, file_storage
from app.tables import DatasetFile, new_id
from app.usage.service import check_storage_quota


def upload_limits(settings: Settings) -> ParseLimits:
    return ParseLimits(
        max_rows=settings.max_upload_rows,
        max_columns=settings.max_upload_columns,
        max_line_chars=settings.max_upload_line_chars,
    )


@dataclass(frozen=True)
class CheckedUpload:
    """An upload staged on disk that has passed every check, not stored yet."""

    staged: Path
    filename: str
    format: str
    size_bytes: int
    summary: TableSummary
    header: bool = True


def parse_column_names(value: str | None, settings: Settings) -> list[str] | None:
    """A `column_names` parameter: a JSON array of strings, or names separated by commas."""
    if value is None:
        return None
    text = value.strip()
    names: object = None
    if text.startswith("["):
        try:
            names = json.loads(text)
        except ValueError:
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _bad_names("column_names starts with '[' but is not a JSON array of strings.")
    else:
        names = text.split(",")
    names = [name.strip() for name in names]
    if not names or not all(names):
        raise _bad_names("column_names has an empty name.")
    if len(set(names)) != len(names):
        raise _bad_names("column_names has a name twice.")
    if sum(map(len, names)) > settings.max_upload_line_chars:
        raise _bad_names(
            f"column_names is longer than {settings.max_upload_line_chars} characters."
        )
    return names


def _bad_names(message: str) -> ApiError:
    return ApiError(
        422,
        "invalid_column_names",
        f"{message} Send a JSON array of distinct names, or names separated by commas.",
    )


def upload_format(
    filename: str, fmt: str | None, header: bool = True, names: list[str] | None = None
) -> str:
    """The upload's format (given, else from the file name), checked with header and names."""
    fmt = (fmt or format_from_filename(filename) or "").lower()
    if fmt not in FORMATS:
        raise ApiError(
            415,
            "unsupported_file_format",
            f"Cannot tell the format of '{filename}'. Name it .csv, .tsv or .jsonl, "
            "or pass the form field format=csv|tsv|jsonl.",
        )
    if not header and fmt == "jsonl":
        raise ApiError(
            422,
            "header_not_supported",
            "A JSON Lines file has no header line (its keys name the columns); "
            "header=false is for CSV and TSV files.",
        )
    if header and names is not None:
        raise ApiError(
            422,
            "column_names_need_no_header",
            "column_names names the columns of a file with no header line; "
            "send header=false with it.",
        )
    return fmt


def scan_upload(
    handle: BinaryIO,
    staged: Path,
    fmt: str,
    settings: Settings,
    header: bool = True,
    names: list[str] | None = None,
) -> TableSummary:
    """The check of an upload as it arrives: `handle` reads what has arrived of the file, which
    is also written to `staged` (app/files/receive.py)."""
    return scan_stream(handle, staged, fmt, upload_limits(settings), header, names)


def check_error(filename: str, exc: FileParseError) -> ApiError:
    """The answer to a file that failed its check."""
    if isinstance(exc, ColumnNamesError):
        return ApiError(422, "column_names_mismatch", f"Cannot read '{filename}': {exc}")
    if isinstance(exc, FileLimitError):
        return ApiError(413, exc.code, f"Cannot accept '{filename}': {exc}")
    return ApiError(400, "invalid_file", f"Cannot read '{filename}': {exc}")


def empty_file() -> ApiError:
    return ApiError(400, "invalid_file", "The uploaded file is empty.")


@contextmanager
def checked_upload(
    settings: Settings,
    stream: BinaryIO,
    filename: str,
    fmt: str | None,
    header: bool = True,
    names: list[str] | None = None,
) -> Iterator[CheckedUpload]:
    """Stage an upload and check that it parses; the staged file is removed when the block
    ends, unless `store_upload` has saved it.

    The file is received in bounded chunks and checked in one streaming pass that stops at the
    first problem or limit, so memory does not grow with its size or its number of rows.
    (The API receives uploads with `app.files.receive`, checking them as they arrive.)
    """
    fmt = upload_format(filename, fmt, header, names)
    storage = file_storage(settings)
    with storage.staged() as staged:
        try:
            size = storage.receive(stream, staged, settings.max_upload_bytes)
        except UploadTooLarge as exc:
            raise ApiError(413, "file_too_large", str(exc)) from exc
        if size == 0:
            raise empty_file()
        try:
            summary = scan_table(staged, fmt, upload_limits(settings), header, names)
        except FileParseError as exc:
            raise check_error(filename, exc) from exc
        yield CheckedUpload(staged, filename, fmt, size, summary, header)


def store_upload(
    session: Session, settings: Settings, tenant_id: str, upload: CheckedUpload
) -> DatasetFile:
    """The file's row, then the file under its id: a failed insert stores nothing."""
    check_storage_quota(session, settings, tenant_id, upload.size_bytes, 413)
    record = FileRepository(session).add(
        DatasetFile(
            id=new_id("file"),
            tenant_id=tenant_id,
            filename=Path(upload.filename).name[:255],
            format=upload.format,
            size_bytes=upload.size_bytes,
            row_count=upload.summary.row_count,
            columns=upload.summary.columns,
            header=upload.header,
        )
    )
    file_storage(settings).save(upload.staged, record.id, upload.format)
    return record


def get_file(session: Session, tenant_id: str, file_id: str) -> DatasetFile:
    record = FileRepository(session).get(tenant_id, file_id)
    if record is None:
        raise NotFound("file", file_id)
    return record
