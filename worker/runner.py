"""One delivery of a training message: claim the job, train, and record how it ended.

Every write is fenced by the attempt's lease (`Fence`), every requeue goes through the outbox
(`enqueue_after_commit`), and every finishing write that fails is followed by a re-read of
the job before anything is decided (its commit may have gone through).
"""

import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from app.batch.schemas import BatchSpec
from app.core.config import Settings
from app.core.db import session_scope
from app.core.redact import public_message
from app.jobs.repository import Fence, JobRepository
from app.jobs.schemas import JobSpec
from app.jobs.states import JobKind, JobStatus, Outcome, RetryReason, StopReason
from app.models.card import load_facts, write_model_card
from app.models.service import refresh_model_card
from app.observability.worker import record_job_finished
from app.queue import enqueue_after_commit
from app.storage import StorageError, get_storage
from app.storage.keys import checkpoints_prefix, file_key, model_prefix, resume_prefix
from app.tables import DatasetFile, TrainedModel, new_id, utcnow
from worker.attempt import Attempt, adopt_checkpoint, attempt_folder, prune_attempts
from worker.batch import BatchAttempt
from worker.errors import JobFailure, TrainingInterrupted
from worker.lease import LeaseKeeper

logger = logging.getLogger(__name__)


class TrainingResultLike(Protocol):
    model_dir: Path
    labels: list[str]
    metrics: dict[str, float]
    best_epoch: int | None
    stopped_early: bool
    task: str
    threshold: float | None


Train = Callable[[Settings, Attempt, LeaseKeeper], TrainingResultLike]
_OUTCOMES = {
    JobStatus.succeeded: Outcome.succeeded,
    JobStatus.failed: Outcome.failed,
    JobStatus.cancelled: Outcome.cancelled,
    JobStatus.queued: Outcome.requeued,
}


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _default_train(settings: Settings, attempt: Attempt, lease: LeaseKeeper) -> TrainingResultLike:
    # torch is imported only where training runs
    from worker.distributed import processes_for, run_distributed
    from worker.training import run_training

    processes = processes_for(settings, attempt.spec.hyperparameters)
    if processes > 1:
        return run_distributed(settings, attempt, lease, processes)
    return run_training(settings, attempt, lease)


def run_job(settings: Settings, job_id: str, train: Train | None = None) -> str:
    """Run the job if this delivery can claim it; returns what happened, for logs and tests."""
    owner = worker_identity()
    with session_scope() as session:
        repo = JobRepository(session)
        fence = repo.claim(job_id, owner, settings.lease_seconds)
        job = repo.get_fresh(job_id)
        if fence is None or job is None:
            state = "missing" if job is None else job.status.value
            logger.info("job %s not claimed (it is %s); message dropped", job_id, state)
            return f"{Outcome.skipped}:{state}"
        tenant_id, pointer, kind = job.tenant_id, job.checkpoint, job.kind
        try:
            spec: JobSpec | BatchSpec = (
                JobSpec.model_validate(job.spec)
                if kind is JobKind.train
                else BatchSpec.model_validate(job.spec)
            )
        except ValidationError:
            repo.fail(fence, "invalid_spec", "The job's spec is not one this worker can run.")
            return f"{Outcome.failed}:invalid_spec"

    folder = attempt_folder(settings, fence)
    folder.mkdir(parents=True, exist_ok=True)
    # The earlier attempt's checkpoint is adopted before its folder is pruned.
    resume = None if isinstance(spec, BatchSpec) else adopt_checkpoint(settings, pointer, folder)
    prune_attempts(settings, fence)
    logger.info("claimed %s job %s as %s (attempt %d)", kind, job_id, owner, fence.attempt)
    lease = LeaseKeeper(fence=fence, settings=settings)
    lease.start()
    outcome = Outcome.lease_lost.value
    try:
        if isinstance(spec, BatchSpec):
            outcome = _batch_and_finish(
                settings, fence, BatchAttempt(tenant_id, spec, folder), lease
            )
        else:
            attempt = Attempt(fence, tenant_id, spec, folder, resume)
            outcome = _train_and_finish(settings, attempt, lease, train or _default_train)
        return outcome
    finally:
        lease.close()
        record_job_finished(outcome)
        logger.info("ended job %s as %s: %s", job_id, owner, outcome)


def _batch_and_finish(
    settings: Settings, fence: Fence, attempt: BatchAttempt, lease: LeaseKeeper
) -> str:
    from worker.batch import run_batch  # torch is imported only where models run

    try:
        result = run_batch(settings, attempt, lease)
    except Exception as exc:
        return _ended_early(settings, fence, exc)
    # The commit point of the produced file: in place first, then its row with the job's end.
    lease.beat()  # record the final progress while the lease is still ours
    output = DatasetFile(
        id=new_id("file"),
        tenant_id=attempt.tenant_id,
        filename=result.filename,
        format=result.format,
        size_bytes=result.output.stat().st_size,
        row_count=result.row_count,
        columns=result.columns,
    )
    storage, key = get_storage(settings), file_key(output.id, output.format)
    storage.put_file(key, result.output)
    ended = _finish(fence, lambda repo: repo.succeed_batch(fence, output, result.result))
    if ended is not JobStatus.succeeded:
        storage.delete(key)
    elif result.result.get("metrics"):
        _refresh_card(settings, attempt.spec.model_id)  # an evaluation: the card lists it
    _remove_job_dir(settings, fence, ended)
    return _outcome(ended)


def _refresh_card(settings: Settings, model_id: str) -> None:
    """Rewrite a model's card after its facts changed; a card never fails a job."""
    try:
        with session_scope() as session:
            model = session.get(TrainedModel, model_id)
            if model is not None:
                refresh_model_card(session, settings, model)
    except Exception:
        logger.exception("could not refresh the card of model %s", model_id)


def _train_and_finish(
    settings: Settings, attempt: Attempt, lease: LeaseKeeper, train: Train
) -> str:
    fence = attempt.fence
    try:
        result = train(settings, attempt, lease)
    except Exception as exc:
        return _ended_early(settings, fence, exc)

    # The commit point: the folder is stored whole, then the row makes it a model. A folder
    # whose row never commits is removed here, or by the sweep if this process dies first.
    lease.beat()  # record the final progress while the lease is still ours
    model_id = new_id("mdl")
    storage = get_storage(settings)
    model = TrainedModel(
        id=model_id,
        tenant_id=attempt.tenant_id,
        job_id=fence.job_id,
        epoch=result.best_epoch,
        base_model=attempt.spec.base_model,
        labels=result.labels,
        text_pair=attempt.spec.text_pair_column is not None,
        metrics=result.metrics,
        task=result.task,
        threshold=result.threshold,
        created_at=utcnow(),
    )
    _write_card(model, result, result.model_dir)
    # put_tree: nothing is visible under models/<id>/ until the whole folder is.
    model.size_bytes = storage.put_tree(model_prefix(model_id), result.model_dir)
    ended = _finish(fence, lambda repo: repo.succeed(fence, model, result.stopped_early))
    if ended is not JobStatus.succeeded:
        logger.warning(
            "job %s ended %s before its model committed; model discarded", fence.job_id, ended
        )
        storage.delete_prefix(model_prefix(model_id))
    _remove_job_dir(settings, fence, ended)
    return _outcome(ended)


def _write_card(model: TrainedModel, result: TrainingResultLike, folder: Path) -> None:
    """The model's README.md from its job's rows, before the folder is stored; a card that
    cannot be written (the database briefly gone) never fails the job."""
    try:
        with session_scope() as session:
            facts = load_facts(session, model)
        facts = replace(facts, best_epoch=result.best_epoch, stopped_early=result.stopped_early)
        write_model_card(folder, facts)
    except Exception:
        logger.exception("could not write the card of model %s", model.id)


def _ended_early(settings: Settings, fence: Fence, exc: Exception) -> str:
    """How an attempt that raised ends: a JobFailure fails the job at once, an interruption
    is a cancel, a shutdown or a lost lease, anything else is a crash (retried)."""
    if isinstance(exc, JobFailure):
        code, message = exc.code, exc.message
        ended = _finish(fence, lambda repo: repo.fail(fence, code, message))
        _remove_job_dir(settings, fence, ended)
        return f"{Outcome.failed}:{code}" if ended is JobStatus.failed else _outcome(ended)
    if isinstance(exc, TrainingInterrupted):
        return _interrupted(settings, fence, exc.reason)
    return _crashed(settings, fence, exc)


def _interrupted(settings: Settings, fence: Fence, reason: StopReason) -> str:
    if reason is StopReason.cancelled:
        ended = _finish(fence, lambda repo: repo.cancel_running(fence))
        _remove_job_dir(settings, fence, ended)
        return _outcome(ended)
    if reason is StopReason.shutdown:
        message = "The worker shut down; the job was requeued."
        return _give_back(settings, fence, RetryReason.worker_shutdown, message)
    return Outcome.lease_lost.value  # another attempt may own the job: write nothing


def _crashed(settings: Settings, fence: Fence, exc: Exception) -> str:
    oom = "OutOfMemory" in type(exc).__name__
    reason = RetryReason.out_of_memory if oom else RetryReason.training_error
    logger.exception("job %s attempt %d crashed", fence.job_id, fence.attempt)
    return _give_back(settings, fence, reason, public_message(exc))


def _give_back(settings: Settings, fence: Fence, reason: RetryReason, message: str) -> str:
    def action(repo: JobRepository) -> JobStatus | None:
        ended = repo.give_back(fence, reason, message, settings.max_attempts)
        if ended is JobStatus.queued:
            enqueue_after_commit(repo.session, fence.job_id)
        return ended

    ended = _finish(fence, action)
    _remove_job_dir(settings, fence, ended)
    if ended is JobStatus.failed:
        return f"{Outcome.failed}:{reason.value}"
    return _outcome(ended)


def _finish(
    fence: Fence, action: Callable[[JobRepository], JobStatus | None], attempts: int = 8
) -> JobStatus | None:
    """A finishing write, retried through a database outage. After a failed try the job is
    re-read first: the COMMIT may have gone through with only its answer lost, and then the
    job shows this attempt as the one that finished it (`finished_by`)."""
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            with session_scope() as session:
                return action(JobRepository(session))
        except SQLAlchemyError as exc:
            if attempt == attempts:
                raise
            logger.warning("finishing write for %s failed (try %d): %s", fence.job_id, attempt, exc)
        time.sleep(delay)
        delay = min(delay * 2, 15.0)
        try:
            with session_scope() as session:
                job = JobRepository(session).get_fresh(fence.job_id)
                if job is not None and job.finished_by == fence.owner:
                    return job.status
        except SQLAlchemyError:
            continue
    raise AssertionError("unreachable")


def _outcome(ended: JobStatus | None) -> str:
    """None: the lease was no longer ours, so nothing was written."""
    return _OUTCOMES[ended].value if ended is not None else Outcome.lease_lost.value


def _remove_job_dir(settings: Settings, fence: Fence, ended: JobStatus | None) -> None:
    """A job that has ended needs none of its attempts' folders, nor its stored checkpoints
    to resume from; its kept epochs stay only if it succeeded (a requeued job keeps all of
    it for the next attempt; the sweep removes what a dying worker leaves)."""
    if ended is None or not ended.is_terminal:
        return
    shutil.rmtree(settings.jobs_dir / fence.job_id, ignore_errors=True)
    done = resume_prefix(fence.job_id)
    if ended is not JobStatus.succeeded:
        done = checkpoints_prefix(fence.job_id)
    try:
        get_storage(settings).delete_prefix(done)
    except StorageError:
        logger.warning("could not remove %s; the sweep will", done, exc_info=True)
