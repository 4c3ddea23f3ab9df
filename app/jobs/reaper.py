"""Recovers jobs whose worker died (expired lease) or whose queue message was lost, and
sweeps leftovers on disk.

Runs as a daemon thread in the API and in every worker. Each action is a conditional update
judged by the database's clock, so several reapers never act twice on one job and no
machine's own clock matters.
"""

import logging
import threading
import time

from app.core.config import Settings
from app.core.db import session_scope
from app.jobs.repository import JobRepository
from app.jobs.states import JobStatus
from app.jobs.sweep import sweep_leftovers
from app.queue import broker_instance, enqueue_after_commit

logger = logging.getLogger(__name__)
# A new job's own request sends its message right after its commit: leave it that long.
SEND_GRACE_SECONDS = 30.0


def reap_once(settings: Settings) -> dict[str, int]:
    """One pass; returns counts of requeued, failed, cancelled and resent jobs."""
    counts = {"requeued": 0, "failed": 0, "cancelled": 0, "resent": 0}
    with session_scope() as session:
        expired = JobRepository(session).expired_running()
    for job_id in expired:
        with session_scope() as session:
            repo = JobRepository(session)
            ended = repo.reap(job_id, settings.max_attempts)
            if ended is JobStatus.queued:
                enqueue_after_commit(session, job_id)
        if ended is not None:
            counts[{"queued": "requeued"}.get(ended.value, ended.value)] += 1
    broker = broker_instance(settings)
    with session_scope() as session:
        lost = JobRepository(session).messages_to_resend(
            broker, SEND_GRACE_SECONDS, settings.requeue_queued_after_seconds
        )
    for job_id in lost:
        with session_scope() as session:
            if JobRepository(session).claim_resend(
                job_id, broker, SEND_GRACE_SECONDS, settings.requeue_queued_after_seconds
            ):
                enqueue_after_commit(session, job_id)
                counts["resent"] += 1
    if any(counts.values()):
        logger.info("reaper: %s", counts)
    return counts


def start_reaper_thread(
    settings: Settings, stop: threading.Event, sweep_store: bool = True
) -> threading.Thread:
    """`sweep_store`: also sweep the object store (not in the Celery parent, which forks)."""

    def loop() -> None:
        last_sweep = time.monotonic()
        while not stop.wait(settings.reaper_interval_seconds):
            try:
                reap_once(settings)
                if time.monotonic() - last_sweep >= settings.sweep_interval_seconds:
                    last_sweep = time.monotonic()
                    sweep_leftovers(settings, store=sweep_store)
            except Exception:
                logger.exception("reaper pass failed; retrying next interval")

    thread = threading.Thread(target=loop, name="tuneserve-reaper", daemon=True)
    thread.start()
    return thread
