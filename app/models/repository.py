"""Queries on trained models; every read is scoped to one tenant."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.tables import TrainedModel


class ModelRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, tenant_id: str, model_id: str) -> TrainedModel | None:
        query = select(TrainedModel).where(
            TrainedModel.id == model_id, TrainedModel.tenant_id == tenant_id
        )
        return self.session.scalar(query)

    def list_recent(self, tenant_id: str, limit: int) -> list[TrainedModel]:
        query = (
            select(TrainedModel)
            .where(TrainedModel.tenant_id == tenant_id)
            .order_by(TrainedModel.created_at.desc(), TrainedModel.id.desc())
            .limit(limit)
        )
        return list(self.session.scalars(query))

    def existing_ids(self, model_ids: list[str]) -> set[str]:
        """Those of `model_ids` that have a row, whatever their tenant (for the sweep)."""
        if not model_ids:
            return set()
        return set(
            self.session.scalars(select(TrainedModel.id).where(TrainedModel.id.in_(model_ids)))
        )

    def by_job_epoch(self, job_id: str) -> dict[int, str]:
        """The job's registered models by the epoch their weights come from."""
        query = select(TrainedModel.epoch, TrainedModel.id).where(TrainedModel.job_id == job_id)
        return {
            epoch: model_id for epoch, model_id in self.session.execute(query) if epoch is not None
        }

    def add(self, model: TrainedModel) -> TrainedModel:
        self.session.add(model)
        self.session.flush()
        return model
