"""/v1/files: upload and list dataset files."""

from typing import Annotated

from fastapi import APIRouter, Form, UploadFile
from fastapi.concurrency import run_in_threadpool

from app.core.deps import SessionDep, SettingsDep
from app.files import service
from app.files.repository import FileRepository
from app.files.schemas import FileList, FileRead

router = APIRouter(prefix="/v1/files", tags=["files"])


@router.post("", status_code=201, response_model=FileRead)
async def upload_file(
    session: SessionDep,
    settings: SettingsDep,
    file: UploadFile,
    format: Annotated[str | None, Form(description="csv, tsv or jsonl")] = None,
) -> FileRead:
    """Upload a CSV, TSV or JSON Lines file; answers its id, row count and columns."""
    record = await run_in_threadpool(
        service.upload_file, session, settings, file.file, file.filename or "upload", format
    )
    session.commit()
    return FileRead.model_validate(record)


@router.get("", response_model=FileList)
def list_files(session: SessionDep, limit: int = 100) -> FileList:
    records = FileRepository(session).list_recent(limit=max(1, min(limit, 1000)))
    return FileList(data=[FileRead.model_validate(r) for r in records])


@router.get("/{file_id}", response_model=FileRead)
def get_file(session: SessionDep, file_id: str) -> FileRead:
    return FileRead.model_validate(service.get_file(session, file_id))
