"""/v1/jobs: create, list, read, cancel fine-tune jobs and read their metrics."""

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from fastapi.concurrency import run_in_threadpool

from app.auth.deps import PrincipalDep, get_principal
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import V1_ERRORS
from app.jobs import service
from app.jobs.chart import render_png
from app.jobs.deps import OwnedJobDep
from app.jobs.schemas import (
    CheckpointList,
    JobList,
    JobRead,
    JobSpec,
    JobStatusName,
    MetricList,
)
from app.models.schemas import ModelRead

logger = logging.getLogger(__name__)
router = APIRouter(
    prefix="/v1/jobs",
    tags=["jobs"],
    dependencies=[Depends(get_principal)],
    responses=V1_ERRORS,
)


@router.post(
    "",
    status_code=201,
    response_model=JobRead,
    responses={200: {"model": JobRead, "description": "A replay: the Idempotency-Key's job"}},
)
def create_job(
    spec: JobSpec,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> JobRead:
    """Queue a fine-tune job. The same Idempotency-Key and body return the same job."""
    job, created = service.create_job(session, settings, principal.tenant_id, spec, idempotency_key)
    if not created:
        response.status_code = 200
    return service.to_read(job)


@router.get("", response_model=JobList)
def list_jobs(
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    status: JobStatusName | None = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> JobList:
    """Jobs, newest first; pass `next_cursor` back as `cursor` for the next page."""
    return service.list_jobs(
        session, principal.tenant_id, limit=limit, status=status, cursor=cursor
    )


@router.get("/{job_id}", response_model=JobRead)
def get_job(job: OwnedJobDep) -> JobRead:
    return service.to_read(job)


@router.post("/{job_id}/cancel", response_model=JobRead)
def cancel_job(session: SessionDep, job: OwnedJobDep) -> JobRead:
    """Cancel a queued job at once, or a running one at its next step (in any stage)."""
    return service.to_read(service.cancel_job(session, job))


@router.get(
    "/{job_id}/metrics.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The training curves"}},
)
async def metrics_chart(session: SessionDep, job: OwnedJobDep) -> Response:
    """Train loss (every few steps), eval loss and each metric per epoch, as a PNG."""
    title, curves = await run_in_threadpool(service.metrics_chart, session, job)
    session.close()
    png = await run_in_threadpool(render_png, title, curves)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/{job_id}/checkpoints", response_model=CheckpointList)
def list_checkpoints(session: SessionDep, job: OwnedJobDep) -> CheckpointList:
    """The epochs whose weights the job kept, with their metrics; the best one is marked."""
    return service.list_checkpoints(session, job)


@router.post(
    "/{job_id}/checkpoints/{epoch}/model",
    status_code=201,
    response_model=ModelRead,
    responses={200: {"model": ModelRead, "description": "The model registered before"}},
)
def register_checkpoint(
    session: SessionDep,
    settings: SettingsDep,
    job: OwnedJobDep,
    # Bounded: a larger number reached the database, which cannot hold it (a 500).
    epoch: Annotated[int, Path(ge=1, le=2**31 - 1, description="The epoch, from 1")],
    response: Response,
) -> ModelRead:
    """Register a kept epoch as a model (predict, download, fine-tune further). The same epoch
    again answers 200 with the same model."""
    model, created = service.register_checkpoint(session, settings, job, epoch)
    if not created:
        response.status_code = 200
    return ModelRead.model_validate(model)


@router.get("/{job_id}/metrics", response_model=MetricList)
def list_metrics(session: SessionDep, job: OwnedJobDep) -> MetricList:
    """One row per finished epoch, written while the job trains."""
    return service.list_metrics(session, job)
