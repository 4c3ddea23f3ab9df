"""Queries on jobs and their metrics rows, including the worker's lease protocol.

A worker owns a running job through a lease (owner + expiry) that it renews while it trains;
every write a worker makes is conditional on still holding the lease, so a job whose lease was
taken over can never be finished twice. Every change of state appends its event to the job's
event log in the same transaction.
"""

import base64
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.events.repository import EventRepository
from app.tables import Job, JobMetric, JobStatus, TrainedModel, utcnow


def encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raise ValueError when the cursor was not made by encode_cursor."""
    padded = cursor + "=" * (-len(cursor) % 4)
    created, _, job_id = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
    created_at = datetime.fromisoformat(created)
    if not job_id or created_at.tzinfo is None:
        raise ValueError("bad cursor")
    return created_at, job_id


class JobRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # --- API side -----------------------------------------------------------------------
    def add(self, job: Job) -> Job:
        self.session.add(job)
        self.session.flush()
        self.events.append(job.id, "queued")
        return job

    @property
    def events(self) -> EventRepository:
        return EventRepository(self.session)

    def get(self, job_id: str) -> Job | None:
        """Any tenant's job: for the worker and the reaper, never for an API caller."""
        return self.session.get(Job, job_id)

    def get_owned(self, tenant_id: str, job_id: str) -> Job | None:
        return self.session.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))

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
    ) -> list[Job]:
        query = (
            select(Job)
            .where(Job.tenant_id == tenant_id)
            .order_by(Job.created_at.desc(), Job.id.desc())
            .limit(limit)
        )
        if status is not None:
            query = query.where(Job.status == status)
        if cursor is not None:
            created, job_id = cursor
            query = query.where(
                or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
            )
        return list(self.session.scalars(query))

    def mark_enqueued(self, job_id: str) -> None:
        self.session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=utcnow()))

    def claim_resend(self, job_id: str, older_than: datetime) -> bool:
        """Compare-and-set on enqueued_at, so that of several reapers only one resends."""
        result = self.session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status == JobStatus.queued,
                or_(Job.enqueued_at.is_(None), Job.enqueued_at < older_than),
            )
            .values(enqueued_at=utcnow())
        )
        return _rowcount(result) == 1

    def cancel_queued(self, job_id: str) -> bool:
        """Cancel a job no worker holds; False when it is no longer queued."""
        now = utcnow()
        result = self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.queued)
            .values(status=JobStatus.cancelled, cancel_requested=True, finished_at=now)
        )
        return self._changed(result, job_id, "cancelled", {"while": "queued"})

    def request_cancel(self, job_id: str) -> bool:
        """Ask the worker of a running job to stop at its next step."""
        result = self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.running)
            .values(cancel_requested=True)
        )
        return self._changed(result, job_id, "cancel_requested")

    def list_metrics(self, job_id: str) -> list[JobMetric]:
        query = select(JobMetric).where(JobMetric.job_id == job_id).order_by(JobMetric.epoch)
        return list(self.session.scalars(query))

    # --- worker side --------------------------------------------------------------------
    def claim(self, job_id: str, owner: str, lease_seconds: float) -> bool:
        """Take the job if it is queued, or running under an expired lease."""
        now = utcnow()
        result = self.session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.cancel_requested.is_(False),
                or_(
                    Job.status == JobStatus.queued,
                    and_(Job.status == JobStatus.running, Job.lease_expires_at < now),
                ),
            )
            .values(
                status=JobStatus.running,
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                attempts=Job.attempts + 1,
                started_at=now,
                error_code=None,
                error_message=None,
            )
            .returning(Job.attempts)
        )
        attempts = result.scalar_one_or_none()
        if attempts is None:
            return False
        self.events.append(job_id, "started", {"attempt": attempts, "worker": owner})
        return True

    def renew_lease(
        self, job_id: str, owner: str, lease_seconds: float, progress: dict[str, Any]
    ) -> Job | None:
        """Extend the lease and record progress; None when the lease is no longer ours."""
        result = self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == owner, Job.status == JobStatus.running)
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds), **progress)
        )
        if _rowcount(result) != 1:
            return None
        return self.session.get(Job, job_id, populate_existing=True)

    def _finish(
        self, job_id: str, owner: str, event: tuple[str, dict[str, Any]], **values: Any
    ) -> bool:
        result = self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == owner, Job.status == JobStatus.running)
            .values(lease_owner=None, lease_expires_at=None, **values)
        )
        return self._changed(result, job_id, *event)

    def finish_succeeded(self, job_id: str, owner: str, model: TrainedModel) -> bool:
        if not self._finish(
            job_id,
            owner,
            ("succeeded", {"model_id": model.id}),
            status=JobStatus.succeeded,
            finished_at=utcnow(),
            model_id=model.id,
        ):
            return False
        self.session.add(model)
        self.session.flush()
        return True

    def finish_failed(self, job_id: str, owner: str, code: str, message: str) -> bool:
        return self._finish(
            job_id,
            owner,
            ("failed", {"code": code, "message": message}),
            status=JobStatus.failed,
            finished_at=utcnow(),
            error_code=code,
            error_message=message,
        )

    def finish_cancelled(self, job_id: str, owner: str) -> bool:
        return self._finish(
            job_id,
            owner,
            ("cancelled", {"while": "running"}),
            status=JobStatus.cancelled,
            finished_at=utcnow(),
        )

    def release(self, job_id: str, owner: str, code: str, message: str) -> bool:
        """Give a running job back to the queue (warm shutdown, retryable error)."""
        return self._finish(
            job_id,
            owner,
            ("retried", {"reason": code, "message": message}),
            status=JobStatus.queued,
            error_code=code,
            error_message=message,
        )

    def _changed(
        self, result: Any, job_id: str, event: str, data: dict[str, Any] | None = None
    ) -> bool:
        """True when the update hit the job; then its event is appended."""
        if _rowcount(result) != 1:
            return False
        self.events.append(job_id, event, data)
        return True

    def add_metric_once(self, row: JobMetric) -> None:
        """Insert an epoch's metrics unless a row for that epoch exists (a resumed run)."""
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
            .values(job_id=row.job_id, created_at=utcnow(), **values)
            .on_conflict_do_nothing(index_elements=["job_id", "epoch"])
            .returning(JobMetric.id)  # psycopg reports no rowcount for ON CONFLICT DO NOTHING
        ).scalar_one_or_none()
        if inserted is not None:
            self.events.append(row.job_id, "epoch_finished", values)

    # --- reaper -------------------------------------------------------------------------
    def expired_running(self, limit: int = 100) -> list[Job]:
        query = (
            select(Job)
            .where(Job.status == JobStatus.running, Job.lease_expires_at < utcnow())
            .limit(limit)
        )
        return list(self.session.scalars(query))

    def requeue_expired(self, job_id: str) -> bool:
        result = self.session.execute(
            update(Job)
            .where(
                Job.id == job_id, Job.status == JobStatus.running, Job.lease_expires_at < utcnow()
            )
            .values(
                status=JobStatus.queued, lease_owner=None, lease_expires_at=None, enqueued_at=None
            )
        )
        return self._changed(result, job_id, "retried", {"reason": "worker_lost"})

    def fail_expired(self, job_id: str, code: str, message: str) -> bool:
        result = self.session.execute(
            update(Job)
            .where(
                Job.id == job_id, Job.status == JobStatus.running, Job.lease_expires_at < utcnow()
            )
            .values(
                status=JobStatus.failed,
                lease_owner=None,
                lease_expires_at=None,
                finished_at=utcnow(),
                error_code=code,
                error_message=message,
            )
        )
        return self._changed(result, job_id, "failed", {"code": code, "message": message})

    def stale_queued(self, older_than: datetime, limit: int = 100) -> list[Job]:
        """Queued jobs never enqueued, or enqueued long ago (their message may be lost)."""
        query = (
            select(Job)
            .where(
                Job.status == JobStatus.queued,
                or_(Job.enqueued_at.is_(None), Job.enqueued_at < older_than),
                Job.created_at < utcnow() - timedelta(seconds=5),
            )
            .order_by(Job.created_at)
            .limit(limit)
        )
        return list(self.session.scalars(query))


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0))
