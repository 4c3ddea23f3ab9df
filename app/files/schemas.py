"""API shapes of uploaded dataset files."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class FileRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    filename: str
    format: str
    size_bytes: int
    row_count: int
    columns: list[str]
    header: bool = Field(
        description="False for a CSV/TSV file with no header line (columns as uploaded)."
    )
    created_at: datetime


class FileList(BaseModel):
    data: list[FileRead]
