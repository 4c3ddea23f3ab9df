"""One delivery of a training message: claim the job, train, and record how it ended."""

import logging
import os
import shutil
import socket
import uuid
from collections.abc import Callable

from app.core.config import Settings
from app.core.db import session_scope
from app.jobs.repository import JobRepository
from app.jobs.schemas import JobSpec
from app.models.locator import trained_model_dir
from app.observability.worker import record_job_finished
from app.queue import enqueue_training
from app.tables import TrainedModel, new_id
from worker.errors import JobFailure, TrainingInterrupted
from worker.lease import LeaseKeeper
from worker.retry import retry_db

logger = logging.getLogger(__name__)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_job(settings: Settings, job_id: str) -> str:
    """Run the job if this delivery can claim it; returns what happened, for logs and tests."""
    owner = worker_identity()
    with session_scope() as session:
        repo = JobRepository(session)
        if not repo.claim(job_id, owner, settings.lease_seconds):
            job = repo.get(job_id)
            state = "missing" if job is None else job.status
            logger.info("job %s not claimed (it is %s); message dropped", job_id, state)
            return f"skipped:{state}"
        job = repo.get(job_id)
        assert job is not None
        spec = JobSpec.model_validate(job.spec)
        attempt = job.attempts
        tenant_id = job.tenant_id

    logger.info("claimed job %s as %s (attempt %d)", job_id, owner, attempt)
    lease = LeaseKeeper(job_id=job_id, owner=owner, settings=settings)
    lease.start()
    outcome = "crashed"
    try:
        outcome = _train_and_finish(settings, job_id, tenant_id, owner, spec, attempt, lease)
        return outcome
    finally:
        lease.close()
        record_job_finished(outcome)
        logger.info("ended job %s as %s: %s", job_id, owner, outcome)


def _train_and_finish(
    settings: Settings,
    job_id: str,
    tenant_id: str,
    owner: str,
    spec: JobSpec,
    attempt: int,
    lease: LeaseKeeper,
) -> str:
    from worker.training import run_training  # torch is imported only in the process that trains

    try:
        result = run_training(settings, job_id, tenant_id, spec, lease)
    except JobFailure as failure:
        code, message = failure.code, failure.message
        _finish(lambda repo: repo.finish_failed(job_id, owner, code, message))
        _remove_job_dir(settings, job_id)
        return f"failed:{code}"
    except TrainingInterrupted as stop:
        return _interrupted(settings, job_id, owner, stop.reason)
    except Exception as exc:
        return _crashed(settings, job_id, owner, attempt, exc)

    lease.beat()  # record the final progress while the lease is still ours
    model_id = new_id("mdl")
    final_dir = trained_model_dir(settings, model_id)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(result.model_dir, final_dir)  # atomic: predict never sees a partial folder
    model = TrainedModel(
        id=model_id,
        tenant_id=tenant_id,
        job_id=job_id,
        base_model=spec.base_model,
        labels=result.labels,
        text_pair=spec.text_pair_column is not None,
        metrics=result.metrics,
    )
    if not _finish(lambda repo: repo.finish_succeeded(job_id, owner, model)):
        logger.warning("job %s lost its lease before it could finish; model discarded", job_id)
        shutil.rmtree(final_dir, ignore_errors=True)
        return "lease_lost"
    _remove_job_dir(settings, job_id)
    return "succeeded"


def _interrupted(settings: Settings, job_id: str, owner: str, reason: str) -> str:
    if reason == "cancelled":
        _finish(lambda repo: repo.finish_cancelled(job_id, owner))
        _remove_job_dir(settings, job_id)
        return "cancelled"
    if reason == "shutdown":
        if _finish(
            lambda repo: repo.release(
                job_id, owner, "worker_shutdown", "The worker shut down; the job was requeued."
            )
        ):
            _send_again(job_id)
        return "requeued"
    return reason


def _crashed(settings: Settings, job_id: str, owner: str, attempt: int, exc: Exception) -> str:
    code = "out_of_memory" if "OutOfMemory" in type(exc).__name__ else "training_error"
    message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:500] if str(exc) else ''}"
    logger.exception("job %s attempt %d crashed", job_id, attempt)
    if attempt >= settings.max_attempts:
        _finish(
            lambda repo: repo.finish_failed(
                job_id, owner, code, f"Training failed on each of {attempt} attempts: {message}"
            )
        )
        _remove_job_dir(settings, job_id)
        return f"failed:{code}"
    if _finish(lambda repo: repo.release(job_id, owner, code, message)):
        _send_again(job_id)
    return "requeued"


def _finish(action: Callable[[JobRepository], bool]) -> bool:
    def attempt() -> bool:
        with session_scope() as session:
            return bool(action(JobRepository(session)))

    return retry_db(attempt)


def _send_again(job_id: str) -> None:
    try:
        enqueue_training(job_id)
        with session_scope() as session:
            JobRepository(session).mark_enqueued(job_id)
    except Exception:
        logger.exception("could not requeue job %s; the reaper will resend it", job_id)


def _remove_job_dir(settings: Settings, job_id: str) -> None:
    shutil.rmtree(settings.jobs_dir / job_id, ignore_errors=True)
