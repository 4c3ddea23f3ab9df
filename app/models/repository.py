"""Queries on trained models."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.tables import TrainedModel


class ModelRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, model_id: str) -> TrainedModel | None:
        return self.session.get(TrainedModel, model_id)

    def list_recent(self, limit: int) -> list[TrainedModel]:
        query = select(TrainedModel).order_by(TrainedModel.created_at.desc()).limit(limit)
        return list(self.session.scalars(query))
