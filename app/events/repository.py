"""Queries on job events. Appends are ordered per job and never leave a gap a reader could
skip: on PostgreSQL the job's row is locked first, so `seq` values commit in order."""

from typing import Any

from sqlalchemy import func, insert, literal, select
from sqlalchemy.orm import Session

from app.tables import Job, JobEvent, utcnow


class EventRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def append(self, job_id: str, type: str, data: dict[str, Any] | None = None) -> None:
        if self.session.get_bind().dialect.name == "postgresql":
            # SQLite has one writer at a time; there this select would only widen the window
            # in which another connection's commit makes ours fail.
            # FOR NO KEY UPDATE: the same lock a job UPDATE takes (every writer takes it on the
            # job's row first), and no conflict with the key-share locks of foreign keys.
            self.session.execute(
                select(Job.id).where(Job.id == job_id).with_for_update(key_share=True)
            )
        next_seq = (
            select(func.coalesce(func.max(JobEvent.seq), 0) + 1)
            .where(JobEvent.job_id == job_id)
            .scalar_subquery()
        )
        self.session.execute(
            insert(JobEvent).from_select(
                ["job_id", "seq", "type", "data", "created_at"],
                select(
                    literal(job_id),
                    next_seq,
                    literal(type),
                    literal(data or {}, JobEvent.data.type),
                    literal(utcnow(), JobEvent.created_at.type),
                ),
            )
        )

    def list_of_type(self, job_id: str, type: str) -> list[JobEvent]:
        query = (
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.type == type)
            .order_by(JobEvent.seq)
        )
        return list(self.session.scalars(query))

    def last_of_type(self, job_id: str, type: str) -> JobEvent | None:
        query = (
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.type == type)
            .order_by(JobEvent.seq.desc())
            .limit(1)
        )
        return self.session.scalar(query)

    def list_after(self, job_id: str, after_seq: int, limit: int) -> list[JobEvent]:
        query = (
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.seq > after_seq)
            .order_by(JobEvent.seq)
            .limit(limit)
        )
        return list(self.session.scalars(query))
