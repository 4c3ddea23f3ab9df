"""API shapes of uploaded dataset files."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class FileRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    filename: str
    format: str
    size_bytes: int
    row_count: int
    columns: list[str]
    created_at: datetime


class FileList(BaseModel):
    data: list[FileRead]
