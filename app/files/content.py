"""/v1/files/{id}/content and DELETE /v1/files/{id}: a stored file back as it was stored, and
its removal."""

from collections.abc import Iterator
from urllib.parse import quote

from fastapi import APIRouter, Depends, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from app.auth.deps import PrincipalDep, get_principal
from app.auth.repository import TenantRepository
from app.core.config import Settings
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import V1_ERRORS, ApiError
from app.files.deps import OwnedFileDep
from app.files.service import get_file
from app.storage import Storage, delete_after_commit, get_storage
from app.storage.keys import file_key
from app.usage.repository import InUseRepository

router = APIRouter(
    prefix="/v1/files",
    tags=["files"],
    dependencies=[Depends(get_principal)],
    responses=V1_ERRORS,
)

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "jsonl": "application/jsonl; charset=utf-8",
}
_CHUNK = 1024 * 1024


def attachment(filename: str) -> str:
    """A Content-Disposition for any file name (RFC 6266: an ASCII fallback and UTF-8)."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def stream_object(storage: Storage, key: str) -> Iterator[bytes]:
    with storage.open(key) as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


@router.get(
    "/{file_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {c.split(";")[0]: {} for c in CONTENT_TYPES.values()}}},
)
def file_content(settings: SettingsDep, record: OwnedFileDep) -> StreamingResponse:
    """The file exactly as stored (an upload, or a file a batch prediction produced)."""
    key = file_key(record.id, record.format)
    storage = get_storage(settings)
    if not storage.exists(key):
        raise ApiError(404, "file_not_found", f"No file with id '{record.id}'.")
    return StreamingResponse(
        stream_object(storage, key),
        media_type=CONTENT_TYPES.get(record.format, "application/octet-stream"),
        headers={
            "Content-Length": str(record.size_bytes),
            "Content-Disposition": attachment(record.filename),
            "Cache-Control": "no-store",
        },
    )


def delete_file(session: Session, settings: Settings, tenant_id: str, file_id: str) -> None:
    """The row, then (once it is committed) the stored bytes. A file that a queued or running
    job reads answers 409 `file_in_use`."""
    # The tenant's lock: a job created meanwhile sees the file gone, or this sees the job.
    TenantRepository(session).lock(tenant_id)
    record = get_file(session, tenant_id, file_id)
    job_id = InUseRepository(session).active_job_using(tenant_id, file_id=file_id)
    if job_id is not None:
        raise ApiError(
            409,
            "file_in_use",
            f"Job '{job_id}' reads file '{file_id}'; delete it once that job has ended, or "
            "cancel the job.",
        )
    session.delete(record)
    session.flush()
    delete_after_commit(session, get_storage(settings), file_key(record.id, record.format))


@router.delete("/{file_id}", status_code=204, response_class=Response)
def remove_file(
    session: SessionDep, settings: SettingsDep, principal: PrincipalDep, file_id: str
) -> Response:
    """Delete a file and free its bytes; 409 `file_in_use` while a queued or running job reads
    it. Jobs that have ended keep their record of it."""
    delete_file(session, settings, principal.tenant_id, file_id)
    return Response(status_code=204)
