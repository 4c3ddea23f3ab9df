"""The Celery application, the one message the service sends ("train this job"), and the
outbox that sends it.

Whoever makes a job need a message (the API creating it, a worker or the reaper requeueing
it) calls `enqueue_after_commit(session, job_id)`. The message goes out only after that
session's transaction commits, so a worker never receives a job its row does not show yet,
and the job is then marked sent (`enqueued_at`, and `enqueued_broker`, the broker instance).
A send that fails leaves the job unmarked and the reaper sends it again; so does a broker
restart that lost its queue (see `JobRepository.messages_to_resend`).
"""

import logging

import redis
from celery import Celery
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings

logger = logging.getLogger(__name__)
TRAIN_TASK = "tuneserve.train_job"
_OUTBOX = "tuneserve_outbox"


def create_celery(settings: Settings) -> Celery:
    """Celery configured for long, expensive, non-idempotent tasks (see docs/reliability.md)."""
    celery = Celery("tuneserve", broker=settings.celery_broker_url)
    celery.conf.update(
        task_default_queue=settings.queue_name,
        task_ignore_result=True,
        # Ack only after the task returns, and hand the message back when the worker process
        # dies, so that a crash never loses a job; the job's database lease stops a second run.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One job per worker process at a time, and no job reserved behind a running one.
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        broker_transport_options=_transport_options(settings),
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
    )
    return celery


def _transport_options(settings: Settings) -> dict[str, object]:
    if settings.celery_broker_url.startswith("sqla+"):
        # kombu's SQLAlchemy transport hands these to create_engine(); SQLite waits for locks.
        return {"connect_args": {"timeout": 30}}
    # Redis: a message unacknowledged this long is delivered again (to another worker); the
    # job's lease makes that second delivery a no-op while the first is still training.
    options: dict[str, object] = {"visibility_timeout": settings.visibility_timeout_seconds}
    if settings.visibility_timeout_seconds < 60:
        # kombu sweeps for such messages only every ~100 s by default; sweep every second.
        options.update(unacked_restore_interval=1, unacked_restore_throttle=1)
    return options


def broker_instance(settings: Settings) -> str | None:
    """An id of the broker's current instance: Redis's run_id (new at every restart, when a
    Redis without persistence has lost its queues); None when the broker cannot be asked.
    The SQLAlchemy transport keeps messages in a database file: one instance for good."""
    url = settings.celery_broker_url
    if not url.startswith(("redis://", "rediss://")):
        return "sqla"
    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            return str(client.info("server")["run_id"])
        finally:
            client.close()
    except redis.RedisError:
        return None


def enqueue_after_commit(session: Session, job_id: str) -> None:
    """Send the job's training message once this session's transaction has committed."""
    session.info.setdefault(_OUTBOX, []).append(job_id)


def has_pending(session: Session) -> bool:
    return bool(session.info.get(_OUTBOX))


@event.listens_for(Session, "after_commit")
def _send_after_commit(session: Session) -> None:
    job_ids = session.info.pop(_OUTBOX, None)
    if job_ids:
        send_now(job_ids)


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop(_OUTBOX, None)


def send_now(job_ids: list[str]) -> None:
    """Send each job's message and mark it sent; failures are left to the reaper."""
    from app.core.db import session_scope
    from app.jobs.repository import JobRepository

    settings = get_settings()
    celery = get_celery()
    for job_id in job_ids:
        before = broker_instance(settings)
        try:
            celery.send_task(TRAIN_TASK, args=[job_id])
        except Exception:
            logger.exception("could not send job %s; the reaper will send it again", job_id)
            continue
        broker = broker_instance(settings)
        if broker is None or broker != before:
            continue  # unconfirmed (the broker restarted meanwhile?): the reaper resends it
        try:
            with session_scope() as session:
                JobRepository(session).mark_sent(job_id, broker)
        except Exception:
            logger.exception("sent job %s but could not mark it sent", job_id)


_celery: Celery | None = None


def get_celery() -> Celery:
    global _celery
    if _celery is None:
        _celery = create_celery(get_settings())
    return _celery
