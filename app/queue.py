"""The Celery application and the one message the API sends: "train this job"."""

from celery import Celery

from app.core.config import Settings, get_settings

TRAIN_TASK = "tuneserve.train_job"


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


def enqueue_training(job_id: str, celery: Celery | None = None) -> None:
    """Send the training message; call only after the job's row is committed."""
    (celery or get_celery()).send_task(TRAIN_TASK, args=[job_id])


_celery: Celery | None = None


def get_celery() -> Celery:
    global _celery
    if _celery is None:
        _celery = create_celery(get_settings())
    return _celery
