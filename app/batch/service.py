"""Creating, reading and cancelling batch predictions: jobs of kind `batch_predict`, which
share the training jobs' lifecycle (lease, events, cancel, recovery)."""

from sqlalchemy.orm import Session

from app.auth.repository import TenantRepository
from app.batch.schemas import (
    BatchPredictionCreate,
    BatchPredictionList,
    BatchPredictionRead,
    BatchProgress,
    BatchSpec,
)
from app.core.config import Settings
from app.core.errors import ApiError
from app.files.repository import FileRepository
from app.jobs.repository import JobRepository, decode_cursor, encode_cursor
from app.jobs.schemas import DEFAULT_METRICS, JobError
from app.jobs.service import check_queued_limit
from app.jobs.states import JobKind, JobStatus
from app.queue import enqueue_after_commit
from app.tables import Job, TrainedModel, new_id


def create_batch(
    session: Session,
    settings: Settings,
    tenant_id: str,
    model: TrainedModel,
    body: BatchPredictionCreate,
) -> Job:
    """Check the file and its columns, and queue the job."""
    record = FileRepository(session).get(tenant_id, body.file_id)
    if record is None:
        raise ApiError(
            422, "unknown_file", f"The file '{body.file_id}' does not exist; upload it first."
        )
    trained = JobRepository(session).get(model.job_id)
    training = trained.spec if trained is not None else {}
    text = body.text_column or training.get("text_column")
    pair = body.text_pair_column or (training.get("text_pair_column") if model.text_pair else None)
    wanted = [("text_column", text)] + ([("text_pair_column", pair)] if model.text_pair else [])
    for field, column in wanted:
        if column is None:
            raise ApiError(422, "missing_column", f"Name the file's {field} for this model.")
        if column not in record.columns:
            raise ApiError(
                422,
                "unknown_column",
                f"The file '{record.id}' has no column {column!r} ({field}); its columns "
                f"are {', '.join(map(repr, record.columns))}.",
            )
    label = body.label_column
    if label is not None and label not in record.columns:
        raise ApiError(
            422,
            "unknown_column",
            f"The file '{record.id}' has no label column {label!r}; its columns are "
            f"{', '.join(map(repr, record.columns))}.",
        )
    if label is None and training.get("label_column") in record.columns:
        label = training["label_column"]  # evaluate when the file has the training labels
    spec = BatchSpec(
        model_id=model.id,
        file_id=record.id,
        text_column=str(text),
        text_pair_column=pair,
        label_column=label,
        precision=body.precision,
        metrics=_metrics_of(training, model.task),
    )
    TenantRepository(session).lock(tenant_id)
    check_queued_limit(session, settings, tenant_id)
    job = Job(
        id=new_id("bpj"),
        tenant_id=tenant_id,
        kind=JobKind.batch_predict,
        status=JobStatus.queued,
        spec=spec.model_dump(mode="json"),
        total_epochs=1.0,
        total_steps=record.row_count,
        epoch=0.0,
        step=0,
        attempts=0,
        cancel_requested=False,
    )
    JobRepository(session).add(job)
    enqueue_after_commit(session, job.id)
    return job


def list_batches(
    session: Session,
    tenant_id: str,
    limit: int,
    status: str | None,
    cursor: str | None,
    model_id: str | None = None,
) -> BatchPredictionList:
    position = None
    if cursor:
        try:
            position = decode_cursor(cursor)
        except (ValueError, OverflowError) as exc:
            raise ApiError(400, "invalid_cursor", "The cursor is not one this API gave.") from exc
    jobs = JobRepository(session).list_recent(
        tenant_id, limit + 1, status, position, kind=JobKind.batch_predict, model_id=model_id
    )
    page = jobs[:limit]
    next_cursor = encode_cursor(page[-1]) if len(jobs) > limit else None
    return BatchPredictionList(data=[to_read(job) for job in page], next_cursor=next_cursor)


def to_read(job: Job) -> BatchPredictionRead:
    spec = BatchSpec.model_validate(job.spec)
    error = None
    if job.error_code and job.status is JobStatus.failed:
        error = JobError(code=job.error_code, message=job.error_message or "")
    return BatchPredictionRead(
        id=job.id,
        status=job.status.value,
        model_id=spec.model_id,
        file_id=spec.file_id,
        spec=spec,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progress=BatchProgress(rows=job.step, total_rows=job.total_steps),
        attempts=job.attempts,
        cancel_requested=job.cancel_requested,
        error=error,
        output_file_id=job.output_file_id,
        result=job.result,
    )


def _metrics_of(training: dict[str, object], task: str) -> list[str]:
    """The metrics the model was trained with (its task's defaults when none were named)."""
    named = training.get("metrics")
    if isinstance(named, list) and named:
        return [str(name) for name in named]
    return list(DEFAULT_METRICS.get(task, ["accuracy"]))
