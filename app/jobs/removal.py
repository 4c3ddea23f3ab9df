"""DELETE /v1/jobs/{id}: a finished job, its events, metrics, kept checkpoints and their bytes.

A job whose models are still registered answers 409 `job_has_models`: a model's card and
`GET /v1/models/{id}` are built from its job's rows (data, spec, per-epoch metrics), and
`models.job_id` references the job. Delete the models first.
"""

from fastapi import APIRouter, Depends, Response
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.auth.deps import get_principal
from app.auth.repository import TenantRepository
from app.core.config import Settings
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import V1_ERRORS, ApiError
from app.jobs.deps import OwnedJobDep
from app.storage import delete_after_commit, get_storage
from app.storage.keys import checkpoints_prefix, outputs_prefix
from app.tables import Job, JobCheckpoint, JobEvent, JobMetric, TrainedModel

router = APIRouter(
    prefix="/v1/jobs",
    tags=["jobs"],
    dependencies=[Depends(get_principal)],
    responses=V1_ERRORS,
)


class JobRemovalRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def model_ids(self, job_id: str) -> list[str]:
        query = select(TrainedModel.id).where(TrainedModel.job_id == job_id)
        return list(self.session.scalars(query.order_by(TrainedModel.id)))

    def remove(self, job_id: str) -> None:
        """The job's rows, children first (SQLite enforces no cascades here)."""
        for table in (JobEvent, JobMetric, JobCheckpoint):
            self.session.execute(delete(table).where(table.job_id == job_id))
        self.session.execute(delete(Job).where(Job.id == job_id))


def delete_job(session: Session, settings: Settings, job: Job) -> None:
    TenantRepository(session).lock(job.tenant_id)
    session.refresh(job)  # the status as of the lock
    if not job.status.is_terminal:
        raise ApiError(
            409,
            "job_not_finished",
            f"Job '{job.id}' is {job.status}; cancel it and delete it once it has ended.",
        )
    repo = JobRemovalRepository(session)
    models = repo.model_ids(job.id)
    if models:
        raise ApiError(
            409,
            "job_has_models",
            f"Job '{job.id}' has registered models ({', '.join(models)}); delete them first "
            "(DELETE /v1/models/{id}).",
        )
    repo.remove(job.id)
    delete_after_commit(
        session, get_storage(settings), checkpoints_prefix(job.id), outputs_prefix(job.id)
    )


@router.delete("/{job_id}", status_code=204, response_class=Response)
def remove_job(session: SessionDep, settings: SettingsDep, job: OwnedJobDep) -> Response:
    """Delete a finished job: its events, metrics, kept checkpoints and their bytes. 409
    `job_not_finished` while it is queued or running, `job_has_models` while models it
    trained are registered. Files it read and produced stay."""
    delete_job(session, settings, job)
    return Response(status_code=204)
