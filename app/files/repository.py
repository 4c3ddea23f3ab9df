"""Queries on the files table; every read is scoped to one tenant."""

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

    def get(self, tenant_id: str, file_id: str) -> DatasetFile | None:
        query = select(DatasetFile).where(
            DatasetFile.id == file_id, DatasetFile.tenant_id == tenant_id
        )
        return self.session.scalar(query)

    def list_recent(self, tenant_id: str, limit: int) -> list[DatasetFile]:
        query = (
            select(DatasetFile)
            .where(DatasetFile.tenant_id == tenant_id)
            .order_by(DatasetFile.created_at.desc(), DatasetFile.id.desc())
            .limit(limit)
        )
        return list(self.session.scalars(query))

    def existing_ids(self, file_ids: list[str]) -> set[str]:
        """Those of `file_ids` that have a row, whatever their tenant (for the sweep)."""
        if not file_ids:
            return set()
        query = select(DatasetFile.id).where(DatasetFile.id.in_(file_ids))
        return set(self.session.scalars(query))
