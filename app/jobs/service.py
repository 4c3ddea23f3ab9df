"""Creating, reading and cancelling fine-tune jobs."""

import hashlib
import json
from dataclasses import replace

from sqlalchemy.orm import Session

from app.auth.repository import TenantRepository
from app.core.config import Settings
from app.core.errors import ApiError, NotFound
from app.events.repository import EventRepository
from app.files.repository import FileRepository
from app.jobs.chart import Curves
from app.jobs.repository import JobRepository, decode_cursor, encode_cursor
from app.jobs.schemas import (
    CheckpointList,
    CheckpointRead,
    FilesDataset,
    JobError,
    JobList,
    JobProgress,
    JobRead,
    JobSpec,
    MetricList,
    MetricRow,
)
from app.jobs.states import EventType, JobKind, JobStatus
from app.models.card import load_facts, write_model_card
from app.models.files import link_model_files
from app.models.locator import InvalidModelName, locate_base_model, trained_model_dir
from app.models.repository import ModelRepository
from app.queue import enqueue_after_commit
from app.storage import get_storage
from app.storage.keys import model_prefix
from app.tables import Job, TrainedModel, new_id, utcnow
from app.usage.service import check_storage_quota


def spec_hash(spec: JobSpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_job(
    session: Session,
    settings: Settings,
    tenant_id: str,
    spec: JobSpec,
    idempotency_key: str | None,
) -> tuple[Job, bool]:
    """Validate what can be known up front and store the job; returns (job, created)."""
    repo = JobRepository(session)
    digest = spec_hash(spec)
    # One job creation per tenant at a time: the Idempotency-Key lookup and the queued-jobs
    # count below then see every job committed before, and cannot both pass for two requests.
    TenantRepository(session).lock(tenant_id)
    if idempotency_key is not None:
        existing = repo.get_by_idempotency_key(tenant_id, idempotency_key)
        if existing is not None:
            if existing.request_hash != digest:
                raise ApiError(
                    409,
                    "idempotency_key_reused",
                    "This Idempotency-Key was already used with a different job spec.",
                )
            return existing, False
    _check_limits(settings, spec)
    _check_base_model(session, settings, tenant_id, spec.base_model)
    if isinstance(spec.dataset, FilesDataset):
        _check_files(session, tenant_id, spec)
    # A Hub dataset name is judged by its syntax alone (the schema's owner/name pattern): the
    # worker fetches the repository's own files and never reads a path of that name.
    check_queued_limit(session, settings, tenant_id)
    job = Job(
        id=new_id("job"),
        tenant_id=tenant_id,
        status=JobStatus.queued,
        spec=spec.model_dump(mode="json"),
        total_epochs=float(spec.hyperparameters.num_train_epochs),
        epoch=0.0,
        step=0,
        attempts=0,
        cancel_requested=False,
        idempotency_key=idempotency_key,
        request_hash=digest,
    )
    repo.add(job)
    enqueue_after_commit(session, job.id)
    return job, True


def check_queued_limit(session: Session, settings: Settings, tenant_id: str) -> None:
    """Jobs of every kind wait in one queue: a tenant may have so many queued at once. Call
    with the tenant locked (TenantRepository.lock), so that the count is exact."""
    queued = JobRepository(session).count_queued(tenant_id)
    if queued >= settings.max_queued_jobs_per_tenant:
        raise ApiError(
            429,
            "too_many_queued_jobs",
            f"This tenant already has {queued} queued jobs, the limit; wait for some to start "
            "or cancel some.",
            headers={"Retry-After": "60"},
        )
    # Every job stores something (a model, kept epochs, an output file): none past the quota.
    check_storage_quota(session, settings, tenant_id, 0, 403)


def _check_limits(settings: Settings, spec: JobSpec) -> None:
    hp = spec.hyperparameters
    for field, value, limit in (
        ("num_train_epochs", hp.num_train_epochs, settings.max_epochs),
        ("per_device_train_batch_size", hp.per_device_train_batch_size, settings.max_batch_size),
        ("per_device_eval_batch_size", hp.per_device_eval_batch_size, settings.max_batch_size),
        ("max_length", hp.max_length or 0, settings.max_sequence_length),
    ):
        if value > limit:
            raise ApiError(
                422,
                "limit_exceeded",
                f"hyperparameters.{field} is {value}; this service allows at most {limit}.",
            )


def _check_base_model(session: Session, settings: Settings, tenant_id: str, name: str) -> None:
    try:
        ref = locate_base_model(settings, name)
    except InvalidModelName as exc:
        raise ApiError(422, "invalid_base_model", str(exc)) from exc
    if ref.kind == "trained" and ModelRepository(session).get(tenant_id, name) is None:
        raise ApiError(422, "unknown_base_model", f"No trained model with id '{name}'.")


def _check_files(session: Session, tenant_id: str, spec: JobSpec) -> None:
    assert isinstance(spec.dataset, FilesDataset)
    files = FileRepository(session)
    wanted = [spec.text_column, spec.label_column]
    if spec.text_pair_column:
        wanted.append(spec.text_pair_column)
    for split, file_id in (
        ("train", spec.dataset.train_file_id),
        ("validation", spec.dataset.validation_file_id),
    ):
        if file_id is None:
            continue  # held out of the train file by the worker
        record = files.get(tenant_id, file_id)
        if record is None:
            raise ApiError(
                422,
                "unknown_file",
                f"The {split} file '{file_id}' does not exist; upload it first.",
            )
        missing = [c for c in wanted if c not in record.columns]
        if missing:
            raise ApiError(
                422,
                "unknown_column",
                f"The {split} file '{file_id}' has no column {', '.join(map(repr, missing))}; "
                f"its columns are {', '.join(map(repr, record.columns))}.",
            )


def get_job(session: Session, tenant_id: str, job_id: str, kind: JobKind | None = None) -> Job:
    """The tenant's job of that kind (any kind: for the event log, shared by both)."""
    job = JobRepository(session).get_owned(tenant_id, job_id, kind)
    if job is None and kind is JobKind.batch_predict:
        raise ApiError(
            404, "batch_prediction_not_found", f"No batch prediction with id '{job_id}'."
        )
    if job is None:
        raise NotFound("job", job_id)
    return job


def list_jobs(
    session: Session, tenant_id: str, limit: int, status: str | None, cursor: str | None
) -> JobList:
    position = None
    if cursor:
        try:
            position = decode_cursor(cursor)
        except ValueError as exc:
            raise ApiError(400, "invalid_cursor", "The cursor is not one this API gave.") from exc
    jobs = JobRepository(session).list_recent(
        tenant_id, limit=limit + 1, status=status, cursor=position
    )
    page = jobs[:limit]
    next_cursor = encode_cursor(page[-1]) if len(jobs) > limit else None
    return JobList(data=[to_read(job) for job in page], next_cursor=next_cursor)


def cancel_job(session: Session, job: Job) -> Job:
    """A queued job ends `cancelled` now; a running one stops at its next step, whatever it is
    doing (loading, training, evaluating, saving), or is ended by the reaper if its worker is
    gone. A job that has ended answers 409."""
    repo = JobRepository(session)
    if not job.status.is_terminal and repo.cancel(job.id):
        fresh = repo.get_fresh(job.id)
        assert fresh is not None
        return fresh
    ended = repo.get_fresh(job.id) or job
    raise ApiError(
        409, "job_not_cancellable", f"Job '{job.id}' has already ended as '{ended.status}'."
    )


def list_metrics(session: Session, job: Job) -> MetricList:
    rows = JobRepository(session).list_metrics(job.id)
    return MetricList(data=[MetricRow.model_validate(row) for row in rows])


def to_read(job: Job) -> JobRead:
    error = None
    if job.error_code and job.status == JobStatus.failed:
        error = JobError(code=job.error_code, message=job.error_message or "")
    return JobRead.model_validate(
        {
            "id": job.id,
            "status": job.status,
            "spec": job.spec,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "progress": JobProgress(
                epoch=job.epoch,
                total_epochs=job.total_epochs,
                step=job.step,
                total_steps=job.total_steps,
            ),
            "attempts": job.attempts,
            "cancel_requested": job.cancel_requested,
            "error": error,
            "model_id": job.model_id,
            "best_epoch": job.best_epoch,
            "stopped_early": job.stopped_early,
            "data": job.summary,
        }
    )


def list_checkpoints(session: Session, job: Job) -> CheckpointList:
    """The epochs whose weights are kept (those of a job that has succeeded), each with its
    metrics and the model registered from it, if any."""
    if job.status is not JobStatus.succeeded:
        return CheckpointList(data=[])
    repo = JobRepository(session)
    metrics = {row.epoch: row for row in repo.list_metrics(job.id)}
    models = ModelRepository(session).by_job_epoch(job.id)
    return CheckpointList(
        data=[
            CheckpointRead(
                epoch=row.epoch,
                step=row.step,
                size_bytes=row.size_bytes,
                eval_loss=metrics[row.epoch].eval_loss if row.epoch in metrics else None,
                metrics=metrics[row.epoch].metrics if row.epoch in metrics else {},
                is_best=row.epoch == job.best_epoch,
                model_id=models.get(row.epoch),
                created_at=row.created_at,
            )
            for row in repo.list_checkpoints(job.id)
        ]
    )


def register_checkpoint(
    session: Session, settings: Settings, job: Job, epoch: int
) -> tuple[TrainedModel, bool]:
    """A kept epoch as a model of its own (idempotent: the same epoch gives the same model,
    and the best epoch gives the job's model); returns (model, created)."""
    if job.status is not JobStatus.succeeded:
        raise ApiError(
            409,
            "job_not_succeeded",
            f"Job '{job.id}' is {job.status}; checkpoints can be registered once it succeeds.",
        )
    models = ModelRepository(session)
    existing = models.by_job_epoch(job.id).get(epoch)
    if existing is not None:
        found = models.get(job.tenant_id, existing)
        assert found is not None
        return found, False
    checkpoint = JobRepository(session).get_checkpoint(job.id, epoch)
    if checkpoint is None:
        raise ApiError(
            404,
            "checkpoint_not_found",
            f"Job '{job.id}' kept no checkpoint of epoch {epoch}; list them at "
            f"/v1/jobs/{job.id}/checkpoints.",
        )
    job_model = models.get(job.tenant_id, job.model_id or "")
    metrics_row = {row.epoch: row for row in JobRepository(session).list_metrics(job.id)}.get(epoch)
    model = TrainedModel(
        id=new_id("mdl"),
        tenant_id=job.tenant_id,
        job_id=job.id,
        epoch=epoch,
        base_model=job.spec["base_model"],
        labels=job_model.labels if job_model else [],
        task=job_model.task if job_model else "single_label_classification",
        threshold=job_model.threshold if job_model else None,
        text_pair=job.spec.get("text_pair_column") is not None,
        metrics=(
            dict(
                metrics_row.metrics,
                **(
                    {"eval_loss": metrics_row.eval_loss}
                    if metrics_row.eval_loss is not None
                    else {}
                ),
            )
            if metrics_row
            else {}
        ),
    )
    # The epoch's loadable files linked into a scratch folder with a card of its own, then
    # stored whole under models/<id>/ (the folder first, then the row: the commit point).
    storage = get_storage(settings)
    staging = trained_model_dir(settings, f".{model.id}.partial")
    with storage.local_dir(f"{checkpoint.path}/") as kept:
        link_model_files(kept, staging)
    model.created_at = utcnow()
    write_model_card(staging, replace(load_facts(session, model), epoch=epoch))
    model.size_bytes = storage.put_tree(model_prefix(model.id), staging)
    models.add(model)
    return model, True


def metrics_chart(session: Session, job: Job) -> tuple[str, Curves]:
    """The chart's title and curves, from the metrics rows and the train_loss events."""
    rows = JobRepository(session).list_metrics(job.id)
    losses = EventRepository(session).list_of_type(job.id, EventType.train_loss)
    metrics: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        for name, value in row.metrics.items():
            metrics.setdefault(name, []).append((row.epoch, value))
    curves = Curves(
        train_loss=[(float(e.data["epoch"]), float(e.data["loss"])) for e in losses],
        eval_loss=[(row.epoch, row.eval_loss) for row in rows if row.eval_loss is not None],
        metrics=metrics,
    )
    return f"{job.id} ({job.spec['base_model']}, {job.status})", curves
