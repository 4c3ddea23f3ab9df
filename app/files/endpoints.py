"""/v1/files: upload and list dataset files."""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from app.auth.deps import PrincipalDep, get_principal
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import V1_ERRORS
from app.files import service
from app.files.deps import OwnedFileDep
from app.files.receive import QueryParameters, receive_upload
from app.files.repository import FileRepository
from app.files.schemas import FileList, FileRead

router = APIRouter(
    prefix="/v1/files",
    tags=["files"],
    dependencies=[Depends(get_principal)],
    responses=V1_ERRORS,
)


_HEADER = "false: the file (CSV or TSV) has no header line; its first line is a row."
_NAMES = (
    "With header=false, the columns' names: a JSON array or comma-separated "
    "(as many as the file has columns). Default: column_1 ... column_n."
)


def _form_schema() -> dict[str, Any]:
    """The multipart body's schema, as FastAPI wrote it for the old `UploadFile` and `Form`
    parameters (the body is now read by `receive_upload`, not by FastAPI)."""
    optional = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    return {
        "type": "object",
        "title": "Body_upload_file_v1_files_post",
        "required": ["file"],
        "properties": {
            "file": {
                "type": "string",
                "contentMediaType": "application/octet-stream",
                "title": "File",
            },
            "format": {
                "anyOf": [{"type": "string", "enum": ["csv", "tsv", "jsonl"]}, {"type": "null"}],
                "title": "Format",
                "description": "csv, tsv or jsonl; by default taken from the file name",
            },
            "header": {
                "anyOf": [{"type": "boolean"}, {"type": "null"}],
                "title": "Header",
                "description": _HEADER,
            },
            "column_names": {**optional, "title": "Column Names", "description": _NAMES},
        },
    }


async def checked_upload(
    request: Request,
    settings: SettingsDep,
    header_query: Annotated[bool | None, Query(alias="header", description=_HEADER)] = None,
    column_names_query: Annotated[
        str | None, Query(alias="column_names", description=_NAMES)
    ] = None,
) -> AsyncIterator[service.CheckedUpload]:
    """The upload, received, staged and checked as it arrives (parsed in a worker thread: the
    event loop only reads the body; see app/files/receive.py)."""
    query = QueryParameters(header=header_query, column_names=column_names_query)
    async with receive_upload(request, settings, query) as upload:
        yield upload


@router.post(
    "",
    status_code=201,
    response_model=FileRead,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": _form_schema()}},
        }
    },
)
def upload_file(
    principal: PrincipalDep,
    # Before the session: a request session is not held while a large file is checked.
    upload: Annotated[service.CheckedUpload, Depends(checked_upload, scope="function")],
    session: SessionDep,
    settings: SettingsDep,
) -> FileRead:
    """Upload a CSV, TSV or JSON Lines file; answers its id, row count and columns. A CSV or
    TSV file with no header line takes header=false (and column_names, else column_1 ...)."""
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
def get_file(record: OwnedFileDep) -> FileRead:
    return FileRead.model_validate(record)
