"""Queries on the files table."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.tables import DatasetFile


class FileRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, file: DatasetFile) -> DatasetFile:
        self.session.add(file)
        self.session.flush()
        return file

    def get(self, file_id: str) -> DatasetFile | None:
        return self.session.get(DatasetFile, file_id)

    def list_recent(self, limit: int) -> list[DatasetFile]:
        query = select(DatasetFile).order_by(DatasetFile.created_at.desc()).limit(limit)
        return list(self.session.scalars(query))
