"""/v1/files: upload and list dataset files."""

from collections.abc import Iterator
from typing import Annotated, Literal, cast

from fastapi import APIRouter, Depends, Form, Query, UploadFile

from app.auth.deps import PrincipalDep, get_principal
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import V1_ERRORS, ApiError
from app.files import service
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


def _one_of(name: str, form: object, query: object) -> object:
    """A parameter that may come as a form field or in the query string, not both differently."""
    if form is not None and query is not None and form != query:
        raise ApiError(
            422,
            "conflicting_parameters",
            f"'{name}' is given both as a form field and in the query string, differently.",
        )
    return form if form is not None else query


def checked_upload(
    settings: SettingsDep,
    file: UploadFile,
    format: Annotated[
        Literal["csv", "tsv", "jsonl"] | None,
        Form(description="csv, tsv or jsonl; by default taken from the file name"),
    ] = None,
    header: Annotated[bool | None, Form(description=_HEADER)] = None,
    column_names: Annotated[str | None, Form(description=_NAMES)] = None,
    header_query: Annotated[bool | None, Query(alias="header", description=_HEADER)] = None,
    column_names_query: Annotated[
        str | None, Query(alias="column_names", description=_NAMES)
    ] = None,
) -> Iterator[service.CheckedUpload]:
    """The upload, staged and checked (a sync dependency: FastAPI runs it in a thread)."""
    has_header = _one_of("header", header, header_query) is not False
    names = service.parse_column_names(
        cast(str | None, _one_of("column_names", column_names, column_names_query)), settings
    )
    with service.checked_upload(
        settings, file.file, file.filename or "upload", format, has_header, names
    ) as upload:
        yield upload


@router.post("", status_code=201, response_model=FileRead)
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
def get_file(session: SessionDep, principal: PrincipalDep, file_id: str) -> FileRead:
    return FileRead.model_validate(service.get_file(session, principal.tenant_id, file_id))
