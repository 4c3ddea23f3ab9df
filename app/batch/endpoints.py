"""/v1/batch-predictions: label a whole file with a trained model (and evaluate the model on
it when the file has labels), in a worker; read, list and cancel such jobs, and follow their
events as a training job's."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.sse import EventSourceResponse

from app.auth.deps import PrincipalDep, get_principal
from app.batch import service
from app.batch.schemas import BatchPredictionCreate, BatchPredictionList, BatchPredictionRead
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import V1_ERRORS
from app.events import endpoints as events
from app.events.schemas import EventList
from app.jobs.schemas import JobStatusName
from app.jobs.service import cancel_job, get_job
from app.jobs.states import JobKind
from app.models.deps import OwnedModelDep
from app.tables import Job

router = APIRouter(
    prefix="/v1",
    tags=["batch predictions"],
    dependencies=[Depends(get_principal)],
    responses=V1_ERRORS,
)


def get_owned_batch(session: SessionDep, principal: PrincipalDep, batch_id: str) -> Job:
    """The caller's batch prediction; another tenant's id answers 404."""
    return get_job(session, principal.tenant_id, batch_id, JobKind.batch_predict)


OwnedBatchDep = Annotated[Job, Depends(get_owned_batch)]


@router.post(
    "/models/{model_id}/batch-predictions", status_code=201, response_model=BatchPredictionRead
)
def create_batch_prediction(
    body: BatchPredictionCreate,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    model: OwnedModelDep,
) -> BatchPredictionRead:
    """Queue a batch prediction of an uploaded file. Columns default to the model's training
    spec; when the file has the label column, the job also evaluates the model on it."""
    job = service.create_batch(session, settings, principal.tenant_id, model, body)
    return service.to_read(job)


@router.get("/batch-predictions", response_model=BatchPredictionList)
def list_batch_predictions(
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    status: JobStatusName | None = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    model_id: Annotated[str | None, Query(max_length=40)] = None,
) -> BatchPredictionList:
    """Newest first (of one model, with `model_id`); pass `next_cursor` back as `cursor`."""
    return service.list_batches(session, principal.tenant_id, limit, status, cursor, model_id)


@router.get("/batch-predictions/{batch_id}", response_model=BatchPredictionRead)
def get_batch_prediction(job: OwnedBatchDep) -> BatchPredictionRead:
    return service.to_read(job)


@router.post("/batch-predictions/{batch_id}/cancel", response_model=BatchPredictionRead)
def cancel_batch_prediction(session: SessionDep, job: OwnedBatchDep) -> BatchPredictionRead:
    """Cancel a queued one at once, or a running one between its chunks of rows."""
    return service.to_read(cancel_job(session, job))


# The event log and its stream, as for a training job (the same handlers: `job_id` is the
# batch prediction's id).
router.add_api_route(
    "/batch-predictions/{job_id}/events",
    events.list_events,
    methods=["GET"],
    response_model=EventList,
    summary="List a batch prediction's events",
)
router.add_api_route(
    "/batch-predictions/{job_id}/events/stream",
    events.stream_events,
    methods=["GET"],
    response_class=EventSourceResponse,
    summary="Stream a batch prediction's events",
)
