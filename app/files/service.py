"""Uploading and reading dataset files."""

import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import ApiError, NotFound
from app.files.parsing import FORMATS, FileParseError, format_from_filename, read_table
from app.files.repository import FileRepository
from app.files.storage import file_path
from app.tables import DatasetFile, new_id

_CHUNK = 1024 * 1024


def upload_file(
    session: Session,
    settings: Settings,
    tenant_id: str,
    stream: BinaryIO,
    filename: str,
    fmt: str | None,
) -> DatasetFile:
    """Store an upload after checking that it parses; nothing is kept when it does not."""
    fmt = (fmt or format_from_filename(filename) or "").lower()
    if fmt not in FORMATS:
        raise ApiError(
            415,
            "unsupported_file_format",
            f"Cannot tell the format of '{filename}'. Name it .csv, .tsv or .jsonl, "
            "or pass the form field format=csv|tsv|jsonl.",
        )
    settings.ensure_dirs()
    file_id = new_id("file")
    tmp_fd, tmp_name = tempfile.mkstemp(dir=settings.uploads_dir, prefix=".upload-")
    tmp_path = Path(tmp_name)
    try:
        size = _copy_limited(stream, tmp_fd, settings.max_upload_bytes)
        try:
            frame = read_table(tmp_path, fmt)
        except FileParseError as exc:
            raise ApiError(400, "invalid_file", f"Cannot read '{filename}': {exc}") from exc
        if len(frame) > settings.max_upload_rows:
            raise ApiError(
                413,
                "too_many_rows",
                f"'{filename}' has {len(frame)} rows; the limit is {settings.max_upload_rows}.",
            )
        os.replace(tmp_path, file_path(settings, file_id, fmt))
    finally:
        tmp_path.unlink(missing_ok=True)
    record = DatasetFile(
        id=file_id,
        tenant_id=tenant_id,
        filename=Path(filename).name[:255],
        format=fmt,
        size_bytes=size,
        row_count=len(frame),
        columns=list(frame.columns),
    )
    return FileRepository(session).add(record)


def _copy_limited(stream: BinaryIO, fd: int, limit: int) -> int:
    size = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := stream.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise ApiError(
                    413, "file_too_large", f"The file is larger than the limit of {limit} bytes."
                )
            out.write(chunk)
    if size == 0:
        raise ApiError(400, "invalid_file", "The uploaded file is empty.")
    return size


def get_file(session: Session, tenant_id: str, file_id: str) -> DatasetFile:
    record = FileRepository(session).get(tenant_id, file_id)
    if record is None:
        raise NotFound("file", file_id)
    return record
