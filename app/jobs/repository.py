"""Queries on jobs and their metrics rows, including the worker's lease protocol.

A worker owns a running job through a lease that it renews while it trains. Its fencing token
(`Fence`: owner + attempt) is part of the WHERE of every write it makes, so a worker whose
lease was taken over can write nothing more. Lease times come from the database's clock
(`db_now`). Every change of status is a `Transition` from app/jobs/states.py, applied as one
conditional UPDATE plus its event in one transaction; the job's row is always the first row a
transaction locks (one lock order, no deadlocks on PostgreSQL).
"""

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.core.clock import db_now
from app.events.repository import EventRepository
from app.jobs.states import (
    CANCEL_QUEUED,
    CANCEL_RUNNING,
    CLAIM,
    FAIL,
    REAP_CANCEL,
    REAP_FAIL,
    REAP_REQUEUE,
    RELEASE,
    SUCCEED,
    EventType,
    JobKind,
    JobStatus,
    RetryReason,
    Transition,
)
from app.tables import DatasetFile, Job, JobCheckpoint, JobMetric, TrainedModel, utcnow

# A row of RETURNING values (attempts, failures, cancel_requested, checkpoint: as selected).
JobRow = Any


def encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raise ValueError when the cursor was not made by encode_cursor (forged, truncated)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, _, job_id = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
        parsed = datetime.fromisoformat(created)
        # Compared in UTC: an offset can push a date at the range's edge past it (OverflowError).
        created_at = parsed.astimezone(UTC) if parsed.tzinfo is not None else None
    except (ValueError, OverflowError) as exc:  # binascii.Error, UnicodeError: ValueErrors
        raise ValueError("bad cursor") from exc
    # An id as new_id makes them: job_ and hex digits (no NUL or other bytes a database refuses).
    suffix = job_id.removeprefix("job_")
    if created_at is None or suffix == job_id or not _is_hex(suffix) or len(job_id) > 40:
        raise ValueError("bad cursor")
    return created_at, job_id


def _is_hex(text: str) -> bool:
    return text != "" and all(char in "0123456789abcdef" for char in text)


@dataclass(frozen=True)
class Fence:
    """The fencing token of one attempt: every write of its worker is conditional on it."""

    job_id: str
    owner: str
    attempt: int


class JobRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def events(self) -> EventRepository:
        return EventRepository(self.session)

    # --- API side -----------------------------------------------------------------------
    def add(self, job: Job) -> Job:
        self.session.add(job)
        self.session.flush()
        self.events.append(job.id, EventType.queued)
        return job

    def get(self, job_id: str) -> Job | None:
        """Any tenant's job: for the worker and the reaper, never for an API caller."""
        return self.session.get(Job, job_id)

    def get_fresh(self, job_id: str) -> Job | None:
        return self.session.get(Job, job_id, populate_existing=True)

    def get_owned(self, tenant_id: str, job_id: str, kind: JobKind | None = None) -> Job | None:
        query = select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id)
        if kind is not None:
            query = query.where(Job.kind == kind)
        return self.session.scalar(query)

    def get_by_idempotency_key(self, tenant_id: str, key: str) -> Job | None:
        return self.session.scalar(
            select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key)
        )

    def count_queued(self, tenant_id: str) -> int:
        query = (
            select(func.count())
            .select_from(Job)
            .where(Job.tenant_id == tenant_id, Job.status == JobStatus.queued)
        )
        return int(self.session.scalar(query) or 0)

    def count_by_status(self) -> dict[str, int]:
        """Jobs of every tenant by status (for metrics); a status with no job is absent."""
        query = select(Job.status, func.count()).group_by(Job.status)
        return {str(status): int(count) for status, count in self.session.execute(query)}

    def list_recent(
        self,
        tenant_id: str,
        limit: int,
        status: str | None = None,
        cursor: tuple[datetime, str] | None = None,
        kind: JobKind = JobKind.train,
        model_id: str | None = None,
    ) -> list[Job]:
        query = (
            select(Job)
            .where(Job.tenant_id == tenant_id, Job.kind == kind)
            .order_by(Job.created_at.desc(), Job.id.desc())
            .limit(limit)
        )
        if status is not None:
            query = query.where(Job.status == status)
        if model_id is not None:  # batch predictions of one model
            query = query.where(Job.spec["model_id"].as_string() == model_id)
        if cursor is not None:
            created, job_id = cursor
            query = query.where(
                or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
            )
        return list(self.session.scalars(query))

    def list_metrics(self, job_id: str) -> list[JobMetric]:
        query = select(JobMetric).where(JobMetric.job_id == job_id).order_by(JobMetric.epoch)
        return list(self.session.scalars(query))

    def cancel(self, job_id: str) -> bool:
        """A queued job ends `cancelled` at once; a running one is asked to stop (its worker,
        or the reaper if the worker is gone, ends it). False when it has already ended."""
        if self._apply(
            CANCEL_QUEUED,
            job_id,
            values={"cancel_requested": True, "finished_at": db_now()},
            data={"while": "queued"},
        ):
            return True
        result = self.session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status == JobStatus.running,
                Job.cancel_requested.is_(False),
            )
            .values(cancel_requested=True)
            .returning(Job.id)
        )
        if result.first() is not None:
            self.events.append(job_id, EventType.cancel_requested)
            return True
        job = self.get_fresh(job_id)
        return job is not None and not job.status.is_terminal

    # --- transitions --------------------------------------------------------------------
    def _apply(
        self,
        transition: Transition,
        job_id: str,
        *,
        values: dict[str, Any] | None = None,
        data: dict[str, Any] | Callable[[JobRow], dict[str, Any]] | None = None,
        fence: Fence | None = None,
        where: tuple[ColumnElement[bool], ...] = (),
    ) -> JobRow | None:
        """One conditional UPDATE from the transition's sources to its target, plus its event
        in the same transaction; None when the job was not in a state that allows it."""
        conditions = [Job.id == job_id, Job.status.in_(transition.sources), *where]
        if transition.fenced:
            if fence is None:
                raise ValueError(f"transition {transition.name} needs the lease's fence")
            conditions += _fenced(fence)
        result = self.session.execute(
            update(Job)
            .where(*conditions)
            .values(status=transition.target, **(values or {}))
            .returning(Job.attempts, Job.failures, Job.cancel_requested)
        )
        row = result.first()
        if row is not None:
            self.events.append(job_id, transition.event, data(row) if callable(data) else data)
        return row

    # --- worker side --------------------------------------------------------------------
    def claim(self, job_id: str, owner: str, lease_seconds: float) -> Fence | None:
        """Take a queued job under a new lease; None when it is not queued (or was cancelled
        while queued: it ends `cancelled` here)."""
        if self._apply(
            CANCEL_QUEUED,
            job_id,
            values={"finished_at": db_now()},
            data={"while": "queued"},
            where=(Job.cancel_requested.is_(True),),
        ):
            return None
        row = self._apply(
            CLAIM,
            job_id,
            values={
                "lease_owner": owner,
                "lease_expires_at": db_now(lease_seconds),
                "attempts": Job.attempts + 1,
                "started_at": db_now(),
                "error_code": None,
                "error_message": None,
                "finished_by": None,
            },
            where=(Job.cancel_requested.is_(False),),
            data=lambda row: {"attempt": int(row.attempts), "worker": owner},
        )
        return None if row is None else Fence(job_id, owner, int(row.attempts))

    def guard(self, fence: Fence) -> JobRow | None:
        """Lock the job's row if `fence` still holds its lease (None otherwise). Every worker
        write starts with this, so it is fenced and the row is always the first lock taken."""
        result = self.session.execute(
            update(Job)
            .where(Job.id == fence.job_id, Job.status == JobStatus.running, *_fenced(fence))
            .values(lease_owner=Job.lease_owner)
            .returning(Job.cancel_requested, Job.failures, Job.checkpoint)
        )
        return result.first()

    def renew(self, fence: Fence, lease_seconds: float, progress: dict[str, Any]) -> bool | None:
        """Extend the lease and record progress: whether a cancel was requested, or None when
        the lease is no longer ours."""
        result = self.session.execute(
            update(Job)
            .where(Job.id == fence.job_id, Job.status == JobStatus.running, *_fenced(fence))
            .values(lease_expires_at=db_now(lease_seconds), **progress)
            .returning(Job.cancel_requested)
        )
        row = result.first()
        return None if row is None else bool(row.cancel_requested)

    def append_event(self, fence: Fence, type: EventType, data: dict[str, Any]) -> None:
        if self.guard(fence) is None:
            raise LeaseLost(fence.job_id)
        self.events.append(fence.job_id, type, data)

    def last_event_step(self, job_id: str, type: EventType) -> int:
        """The `step` of the job's last event of this type (0 if none)."""
        event = self.events.last_of_type(job_id, type)
        return int(event.data.get("step", 0)) if event is not None else 0

    def record_checkpoint(self, fence: Fence, path: str, data: dict[str, Any]) -> None:
        """Point the job at a complete checkpoint; only the lease holder may."""
        if self.guard(fence) is None:
            raise LeaseLost(fence.job_id)
        self.session.execute(update(Job).where(Job.id == fence.job_id).values(checkpoint=path))
        self.events.append(fence.job_id, EventType.checkpoint_saved, data)

    def record_summary(self, fence: Fence, summary: dict[str, Any]) -> None:
        """What the worker loaded (rows per split, labels, where validation came from)."""
        if self.guard(fence) is None:
            raise LeaseLost(fence.job_id)
        self.session.execute(update(Job).where(Job.id == fence.job_id).values(summary=summary))

    def record_epoch_weights(
        self, fence: Fence, epoch: int, step: int, path: str, size_bytes: int
    ) -> None:
        """Keep an epoch's weights for the user (a resumed attempt's own copy replaces an
        earlier attempt's)."""
        if self.guard(fence) is None:
            raise LeaseLost(fence.job_id)
        values = {"step": step, "path": path, "size_bytes": size_bytes}
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self.session.execute(
            insert(JobCheckpoint)
            .values(job_id=fence.job_id, epoch=epoch, created_at=utcnow(), **values)
            .on_conflict_do_update(index_elements=["job_id", "epoch"], set_=values)
        )

    def list_checkpoints(self, job_id: str) -> list[JobCheckpoint]:
        query = (
            select(JobCheckpoint)
            .where(JobCheckpoint.job_id == job_id)
            .order_by(JobCheckpoint.epoch)
        )
        return list(self.session.scalars(query))

    def get_checkpoint(self, job_id: str, epoch: int) -> JobCheckpoint | None:
        return self.session.scalar(
            select(JobCheckpoint).where(
                JobCheckpoint.job_id == job_id, JobCheckpoint.epoch == epoch
            )
        )

    def add_metric_once(self, fence: Fence, row: JobMetric) -> None:
        """Insert an epoch's metrics unless a row for that epoch exists (a resumed run)."""
        if self.guard(fence) is None:
            raise LeaseLost(fence.job_id)
        values: dict[str, Any] = {
            "epoch": row.epoch,
            "step": row.step,
            "train_loss": row.train_loss,
            "eval_loss": row.eval_loss,
            "metrics": row.metrics,
            "elapsed_seconds": row.elapsed_seconds,
        }
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        inserted = self.session.execute(
            insert(JobMetric)
            .values(job_id=fence.job_id, created_at=utcnow(), **values)
            .on_conflict_do_nothing(index_elements=["job_id", "epoch"])
            .returning(JobMetric.id)  # psycopg reports no rowcount for ON CONFLICT DO NOTHING
        ).scalar_one_or_none()
        if inserted is not None:
            self.events.append(fence.job_id, EventType.epoch_finished, values)

    def succeed(
        self,
        fence: Fence,
        model: TrainedModel,
        stopped_early: bool = False,
    ) -> JobStatus | None:
        """Register the model and end the job `succeeded`: the commit point of a model. A
        cancel requested before it wins: the job ends `cancelled` and the model is not
        registered. None when the lease was no longer ours."""
        state = self.guard(fence)
        if state is None:
            return None
        if state.cancel_requested:
            return self.cancel_running(fence)
        if not self._apply(
            SUCCEED,
            fence.job_id,
            fence=fence,
            values={
                **_ended(fence),
                "model_id": model.id,
                "best_epoch": model.epoch,
                "stopped_early": stopped_early,
            },
            data={"model_id": model.id, "best_epoch": model.epoch, "stopped_early": stopped_early},
        ):
            return None
        self.session.add(model)
        self.session.flush()
        return JobStatus.succeeded

    def succeed_batch(
        self, fence: Fence, output: DatasetFile, result: dict[str, Any]
    ) -> JobStatus | None:
        """End a batch prediction `succeeded` with its output file registered (the commit
        point of the file), unless a cancel came first."""
        state = self.guard(fence)
        if state is None:
            return None
        if state.cancel_requested:
            return self.cancel_running(fence)
        if not self._apply(
            SUCCEED,
            fence.job_id,
            fence=fence,
            values={**_ended(fence), "output_file_id": output.id, "result": result},
            data={"output_file_id": output.id},
        ):
            return None
        self.session.add(output)
        self.session.flush()
        return JobStatus.succeeded

    def fail(self, fence: Fence, code: str, message: str) -> JobStatus | None:
        """End the job `failed` (or `cancelled`, when a cancel was requested)."""
        state = self.guard(fence)
        if state is None:
            return None
        if state.cancel_requested:
            return self.cancel_running(fence)
        done = self._apply(
            FAIL,
            fence.job_id,
            fence=fence,
            values={**_ended(fence), "error_code": code, "error_message": message},
            data={"code": code, "message": message},
        )
        return JobStatus.failed if done else None

    def cancel_running(self, fence: Fence) -> JobStatus | None:
        done = self._apply(
            CANCEL_RUNNING,
            fence.job_id,
            fence=fence,
            values=_ended(fence),
            data={"while": "running"},
        )
        return JobStatus.cancelled if done else None

    def give_back(
        self, fence: Fence, reason: RetryReason, message: str, max_failures: int
    ) -> JobStatus | None:
        """Hand a running job back after a crash or a warm shutdown: `cancelled` if a cancel
        was requested, `failed` once crashes reach `max_failures`, else `queued` (to be sent
        again by the caller's outbox). None when the lease was no longer ours."""
        state = self.guard(fence)
        if state is None:
            return None
        failure = reason is not RetryReason.worker_shutdown
        return self._end_or_requeue(
            fence.job_id, state, reason, message, max_failures, failure, fence=fence
        )

    def _end_or_requeue(
        self,
        job_id: str,
        state: JobRow,
        reason: RetryReason,
        message: str,
        max_failures: int,
        failure: bool,
        fence: Fence | None = None,
        where: tuple[ColumnElement[bool], ...] = (),
    ) -> JobStatus | None:
        failures = int(state.failures) + (1 if failure else 0)
        cancel, fail, requeue = (
            (CANCEL_RUNNING, FAIL, RELEASE) if fence else (REAP_CANCEL, REAP_FAIL, REAP_REQUEUE)
        )
        ended: dict[str, Any] = (
            _ended(fence)
            if fence
            else {"lease_owner": None, "lease_expires_at": None, "finished_at": db_now()}
        )
        if state.cancel_requested:
            done = self._apply(
                cancel, job_id, fence=fence, where=where, values=ended, data={"while": "running"}
            )
            return JobStatus.cancelled if done else None
        if failure and failures >= max_failures:
            text = f"Training failed on each of {failures} attempts: {message}"
            done = self._apply(
                fail,
                job_id,
                fence=fence,
                where=where,
                values={
                    **ended,
                    "failures": failures,
                    "error_code": reason.value,
                    "error_message": text,
                },
                data={"code": reason.value, "message": text},
            )
            return JobStatus.failed if done else None
        done = self._apply(
            requeue,
            job_id,
            fence=fence,
            where=where,
            values={
                "lease_owner": None,
                "lease_expires_at": None,
                "finished_by": fence.owner if fence else None,
                "failures": failures,
                "error_code": reason.value,
                "error_message": message,
                "enqueued_at": None,
                "enqueued_broker": None,
            },
            data={"reason": reason.value, "message": message, "failures": failures},
        )
        return JobStatus.queued if done else None

    # --- reaper -------------------------------------------------------------------------
    def expired_running(self, limit: int = 100) -> list[str]:
        query = (
            select(Job.id)
            .where(Job.status == JobStatus.running, Job.lease_expires_at < db_now())
            .limit(limit)
        )
        return list(self.session.scalars(query))

    def reap(self, job_id: str, max_failures: int) -> JobStatus | None:
        """End or requeue a running job whose lease has expired by the database's clock."""
        expired = (Job.lease_expires_at < db_now(),)
        state = self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.running, *expired)
            .values(lease_owner=Job.lease_owner)
            .returning(Job.cancel_requested, Job.failures, Job.checkpoint)
        ).first()
        if state is None:
            return None
        message = "The worker running this job stopped renewing its lease."
        return self._end_or_requeue(
            job_id, state, RetryReason.worker_lost, message, max_failures, True, where=expired
        )

    # --- the outbox's bookkeeping (app/queue.py) ------------------------------------------
    def mark_sent(self, job_id: str, broker: str) -> None:
        self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.queued)
            .values(enqueued_at=db_now(), enqueued_broker=broker)
        )

    def messages_to_resend(
        self, broker: str | None, grace_seconds: float, resend_after_seconds: float
    ) -> list[str]:
        """Queued jobs whose message is lost: never confirmed sent within the grace, sent to
        a broker instance that has since restarted (`broker` is the current one), or, when
        set, sent longer ago than `resend_after_seconds`."""
        query = (
            select(Job.id)
            .where(
                Job.status == JobStatus.queued,
                _message_lost(broker, grace_seconds, resend_after_seconds),
            )
            .order_by(Job.created_at)
            .limit(100)
        )
        return list(self.session.scalars(query))

    def claim_resend(
        self, job_id: str, broker: str | None, grace_seconds: float, resend_after_seconds: float
    ) -> bool:
        """Compare-and-set, so that of several reapers only one resends a job's message."""
        result = self.session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status == JobStatus.queued,
                _message_lost(broker, grace_seconds, resend_after_seconds),
            )
            .values(enqueued_at=db_now(), enqueued_broker=None)
            .returning(Job.id)
        )
        return result.first() is not None

    # --- the sweep of leftovers (app/jobs/sweep.py) ---------------------------------------
    def statuses(self, job_ids: list[str]) -> dict[str, JobStatus]:
        if not job_ids:
            return {}
        query = select(Job.id, Job.status).where(Job.id.in_(job_ids))
        return {job_id: status for job_id, status in self.session.execute(query)}


class LeaseLost(Exception):
    """The worker's fence no longer holds: another attempt may own the job."""


def _message_lost(
    broker: str | None, grace_seconds: float, resend_after_seconds: float
) -> ColumnElement[bool]:
    lost = [
        and_(
            Job.enqueued_broker.is_(None),
            func.coalesce(Job.enqueued_at, Job.created_at) < db_now(-grace_seconds),
        )
    ]
    if broker is not None:
        lost.append(and_(Job.enqueued_broker.is_not(None), Job.enqueued_broker != broker))
    if resend_after_seconds > 0:
        lost.append(Job.enqueued_at < db_now(-resend_after_seconds))
    return or_(*lost)


def _fenced(fence: Fence) -> tuple[ColumnElement[bool], ...]:
    return (Job.lease_owner == fence.owner, Job.attempts == fence.attempt)


def _ended(fence: Fence) -> dict[str, Any]:
    return {
        "lease_owner": None,
        "lease_expires_at": None,
        "finished_at": db_now(),
        "finished_by": fence.owner,
    }
