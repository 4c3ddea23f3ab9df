"""Stored bytes of a tenant, summed from the sizes its rows record (no walk of the disk)."""

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.jobs.states import JobKind, JobStatus
from app.tables import DatasetFile, Job, JobCheckpoint, TrainedModel


class UsageRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def bytes_by_kind(self, tenant_id: str) -> dict[str, int]:
        """files (uploads), outputs (files jobs produced), models, checkpoints (kept epochs)."""
        outputs_ids = select(Job.output_file_id).where(
            Job.tenant_id == tenant_id, Job.output_file_id.is_not(None)
        )
        files_total = self._sum(
            select(func.sum(DatasetFile.size_bytes)).where(DatasetFile.tenant_id == tenant_id)
        )
        outputs = self._sum(
            select(func.sum(DatasetFile.size_bytes)).where(
                DatasetFile.tenant_id == tenant_id, DatasetFile.id.in_(outputs_ids)
            )
        )
        models = self._sum(
            select(func.sum(TrainedModel.size_bytes)).where(TrainedModel.tenant_id == tenant_id)
        )
        checkpoints = self._sum(
            select(func.sum(JobCheckpoint.size_bytes))
            .join(Job, Job.id == JobCheckpoint.job_id)
            .where(Job.tenant_id == tenant_id)
        )
        return {
            "files": files_total - outputs,
            "models": models,
            "checkpoints": checkpoints,
            "outputs": outputs,
        }

    def _sum(self, query: object) -> int:
        return int(self.session.scalar(query) or 0)  # type: ignore[call-overload]


ACTIVE = (JobStatus.queued, JobStatus.running)


def _uses(spec: dict[str, Any], file_id: str | None, model_id: str | None) -> bool:
    """Whether a job spec (training or batch prediction) reads this file or this model."""
    dataset = spec.get("dataset") or {}
    files = {dataset.get("train_file_id"), dataset.get("validation_file_id"), spec.get("file_id")}
    models = {spec.get("base_model"), spec.get("model_id")}
    return (file_id is not None and file_id in files) or (
        model_id is not None and model_id in models
    )


class InUseRepository:
    """Which queued or running job of a tenant reads a file or starts from a model."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def active_job_using(
        self, tenant_id: str, file_id: str | None = None, model_id: str | None = None
    ) -> str | None:
        query = select(Job.id, Job.spec).where(Job.tenant_id == tenant_id, Job.status.in_(ACTIVE))
        for job_id, spec in self.session.execute(query):
            if _uses(spec or {}, file_id, model_id):
                return str(job_id)
        return None


def evaluation_jobs(session: Session, tenant_id: str, model_id: str) -> list[Job]:
    """The model's succeeded batch predictions, oldest first (those with labels evaluated it)."""
    query = (
        select(Job)
        .where(
            Job.tenant_id == tenant_id,
            Job.kind == JobKind.batch_predict,
            Job.status == JobStatus.succeeded,
        )
        .order_by(Job.created_at, Job.id)
    )
    return [job for job in session.scalars(query) if (job.spec or {}).get("model_id") == model_id]
