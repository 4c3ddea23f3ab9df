"""The lease protocol and the reaper, on SQLite and PostgreSQL."""

import time
from datetime import timedelta
from pathlib import Path

from app.core.config import get_settings
from app.core.db import session_scope
from app.jobs.reaper import reap_once
from app.jobs.repository import JobRepository
from app.tables import JobMetric, TrainedModel
from tests.support.auth import tenant_id_of
from tests.support.rows import job_row, model_row


def add_job() -> str:
    with session_scope() as session:
        job = job_row(tenant_id_of(session))
        JobRepository(session).add(job)
        return job.id


def trained_model(job_id: str) -> TrainedModel:
    with session_scope() as session:
        job = JobRepository(session).get(job_id)
        assert job is not None
        tenant_id = job.tenant_id
    return model_row(tenant_id, job_id)


def claim(job_id: str, owner: str, lease: float = 60) -> bool:
    with session_scope() as session:
        return JobRepository(session).claim(job_id, owner, lease)


def test_only_one_claim_wins_while_the_lease_lives(configured: Path) -> None:
    job_id = add_job()
    assert claim(job_id, "w1")
    assert not claim(job_id, "w2")
    with session_scope() as session:
        job = JobRepository(session).get(job_id)
        assert job is not None
        assert (job.status, job.lease_owner, job.attempts) == ("running", "w1", 1)


def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_finish(configured: Path) -> None:
    job_id = add_job()
    assert claim(job_id, "w1", lease=0.2)
    time.sleep(0.4)
    assert claim(job_id, "w2")
    with session_scope() as session:
        repo = JobRepository(session)
        assert repo.renew_lease(job_id, "w1", 60, {}) is None
        assert not repo.finish_failed(job_id, "w1", "x", "y")
        model = trained_model(job_id)
        assert not repo.finish_succeeded(job_id, "w1", model)
    with session_scope() as session:
        repo = JobRepository(session)
        model = trained_model(job_id)
        assert repo.finish_succeeded(job_id, "w2", model)
    with session_scope() as session:
        job = JobRepository(session).get(job_id)
        assert job is not None
        assert (job.status, job.attempts, job.model_id) == ("succeeded", 2, model.id)


def test_reaper_resends_queued_jobs_whose_message_was_lost(configured: Path) -> None:
    settings = get_settings()
    settings.requeue_queued_after_seconds = 0
    job_id = add_job()
    with session_scope() as session:  # as if created long ago and never enqueued
        job = JobRepository(session).get(job_id)
        assert job is not None
        job.created_at = job.created_at - timedelta(minutes=1)
    sent: list[str] = []

    class FakeCelery:
        def send_task(self, name: str, args: list[str]) -> None:
            sent.append(args[0])

    assert reap_once(settings, FakeCelery())["resent"] == 1  # type: ignore[arg-type]
    assert sent == [job_id]
    settings.requeue_queued_after_seconds = 600
    assert reap_once(settings, FakeCelery())["resent"] == 0  # type: ignore[arg-type]


def test_cancelled_jobs_are_never_claimed(configured: Path) -> None:
    job_id = add_job()
    with session_scope() as session:
        assert JobRepository(session).cancel_queued(job_id)
    assert not claim(job_id, "w1")


def test_metrics_rows_are_written_once_per_epoch(configured: Path) -> None:
    job_id = add_job()
    for loss in (0.5, 0.4):  # the second is a resumed run re-evaluating epoch 1
        with session_scope() as session:
            row = JobMetric(
                job_id=job_id,
                epoch=1,
                step=10,
                train_loss=loss,
                eval_loss=loss,
                metrics={"accuracy": 0.5},
                elapsed_seconds=1.0,
            )
            JobRepository(session).add_metric_once(row)
    with session_scope() as session:
        rows = JobRepository(session).list_metrics(job_id)
        assert [(r.epoch, r.train_loss) for r in rows] == [(1, 0.5)]


def test_reaper_requeues_dead_workers_jobs_then_gives_up(
    configured: Path, monkeypatch: object
) -> None:
    settings = get_settings()
    settings.max_attempts = 2
    job_id = add_job()
    sent: list[str] = []

    class FakeCelery:
        def send_task(self, name: str, args: list[str]) -> None:
            sent.append(args[0])

    assert claim(job_id, "w1", lease=0.1)
    time.sleep(0.3)
    assert reap_once(settings, FakeCelery())["requeued"] == 1  # type: ignore[arg-type]
    with session_scope() as session:
        job = JobRepository(session).get(job_id)
        assert job is not None and job.status == "queued" and job.lease_owner is None
    assert sent == [job_id]
    assert claim(job_id, "w2", lease=0.1)
    time.sleep(0.3)
    assert reap_once(settings, FakeCelery())["failed"] == 1  # type: ignore[arg-type]
    with session_scope() as session:
        job = JobRepository(session).get(job_id)
        assert job is not None
        assert (job.status, job.error_code) == ("failed", "worker_lost")
