"""/v1/files: upload and list dataset files."""

from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Query, UploadFile

from app.auth.deps import PrincipalDep, get_principal
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import V1_ERRORS
from app.files import service
from app.files.repository import FileRepository
from app.files.schemas import FileList, FileRead

router = APIRouter(
    prefix="/v1/files",
    tags=["files"],
    dependencies=[Depends(get_principal)],
    responses=V1_ERRORS,
)


def checked_upload(
    settings: SettingsDep,
    file: UploadFile,
    format: Annotated[
        Literal["csv", "tsv", "jsonl"] | None,
        Form(description="csv, tsv or jsonl; by default taken from the file name"),
    ] = None,
) -> Iterator[service.CheckedUpload]:
    """The upload, staged and checked (a sync dependency: FastAPI runs it in a thread)."""
    with service.checked_upload(settings, file.file, file.filename or "upload", format) as upload:
        yield upload


@router.post("", status_code=201, response_model=FileRead)
def upload_file(
    principal: PrincipalDep,
    # Before the session: a request session is not held while a large file is checked.
    upload: Annotated[service.CheckedUpload, Depends(checked_upload, scope="function")],
    session: SessionDep,
    settings: SettingsDep,
) -> FileRead:
    """Upload a CSV, TSV or JSON Lines file; answers its id, row count and columns."""
    record = service.store_upload(session, settings, principal.tenant_id, upload)
    return FileRead.model_validate(record)


@router.get("", response_model=FileList)
def list_files(
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> FileList:
    records = FileRepository(session).list_recent(principal.tenant_id, limit=limit)
    return FileList(data=[FileRead.model_validate(r) for r in records])


@router.get("/{file_id}", response_model=FileRead)
def get_file(session: SessionDep, principal: PrincipalDep, file_id: str) -> FileRead:
    return FileRead.model_validate(service.get_file(session, principal.tenant_id, file_id))
