"""Recovers jobs whose worker died (expired lease) or whose queue message was lost.

Runs as a daemon thread in the API and in every worker; each action is a conditional update,
so several reapers never act twice on one job.
"""

import logging
import threading
from datetime import timedelta

from celery import Celery

from app.core.config import Settings
from app.core.db import session_scope
from app.jobs.repository import JobRepository
from app.queue import enqueue_training
from app.tables import utcnow

logger = logging.getLogger(__name__)


def reap_once(settings: Settings, celery: Celery | None = None) -> dict[str, int]:
    """One pass; returns counts of requeued, failed and resent jobs."""
    counts = {"requeued": 0, "failed": 0, "resent": 0}
    requeued: list[str] = []
    with session_scope() as session:
        repo = JobRepository(session)
        for job in repo.expired_running():
            if job.attempts >= settings.max_attempts:
                if repo.fail_expired(
                    job.id,
                    "worker_lost",
                    f"The worker running this job stopped responding on each of "
                    f"{job.attempts} attempts.",
                ):
                    counts["failed"] += 1
            elif repo.requeue_expired(job.id):
                counts["requeued"] += 1
                requeued.append(job.id)
    for job_id in requeued:
        enqueue_training(job_id, celery)
        with session_scope() as session:
            JobRepository(session).mark_enqueued(job_id)
    older_than = utcnow() - timedelta(seconds=settings.requeue_queued_after_seconds)
    with session_scope() as session:
        repo = JobRepository(session)
        stale = [job.id for job in repo.stale_queued(older_than)]
    for job_id in stale:
        with session_scope() as session:
            if not JobRepository(session).claim_resend(job_id, older_than):
                continue
        enqueue_training(job_id, celery)
        counts["resent"] += 1
    if any(counts.values()):
        logger.info("reaper: %s", counts)
    return counts


def start_reaper_thread(settings: Settings, stop: threading.Event) -> threading.Thread:
    def loop() -> None:
        while not stop.wait(settings.reaper_interval_seconds):
            try:
                reap_once(settings)
            except Exception:
                logger.exception("reaper pass failed; retrying next interval")

    thread = threading.Thread(target=loop, name="tuneserve-reaper", daemon=True)
    thread.start()
    return thread
