"""The fenced job lifecycle and the reaper, on SQLite and PostgreSQL (issue 12's defects)."""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.core.config import get_settings
from app.core.db import session_scope
from app.jobs.reaper import reap_once
from app.jobs.repository import Fence, JobRepository, LeaseLost
from app.jobs.schemas import JobSpec
from app.jobs.states import EventType, JobStatus, RetryReason
from app.tables import JobMetric, TrainedModel
from tests.support.auth import tenant_id_of
from tests.support.rows import epoch_metric, job_row, model_row
from tests.support.specs import tiny_spec


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Training messages the outbox sends (to a fake broker)."""
    messages: list[str] = []

    class FakeCelery:
        def send_task(self, name: str, args: list[str]) -> None:
            messages.append(args[0])

    monkeypatch.setattr("app.queue.get_celery", lambda: FakeCelery())
    return messages


def add_job() -> str:
    with session_scope() as session:
        job = job_row(tenant_id_of(session))
        job.spec = JobSpec.model_validate(tiny_spec("file_a", "file_b")).model_dump(mode="json")
        JobRepository(session).add(job)
        return job.id


def trained_model(job_id: str) -> TrainedModel:
    with session_scope() as session:
        job = JobRepository(session).get(job_id)
        assert job is not None
        tenant_id = job.tenant_id
    return model_row(tenant_id, job_id)


def claim(job_id: str, owner: str, lease: float = 60) -> Fence | None:
    with session_scope() as session:
        return JobRepository(session).claim(job_id, owner, lease)


def job(job_id: str) -> Any:
    with session_scope() as session:
        found = JobRepository(session).get(job_id)
        assert found is not None
        return found


def events(job_id: str) -> list[str]:
    with session_scope() as session:
        return [e.type.value for e in JobRepository(session).events.list_after(job_id, 0, 1000)]


def request_cancel(job_id: str) -> None:
    with session_scope() as session:
        assert JobRepository(session).cancel(job_id)


def expire_now(job_id: str) -> None:
    with session_scope() as session:
        found = JobRepository(session).get(job_id)
        assert found is not None
        found.lease_expires_at = datetime.now(UTC) - timedelta(seconds=5)


def test_only_one_claim_wins_and_each_attempt_has_its_own_fence(configured: Path) -> None:
    job_id = add_job()
    fence = claim(job_id, "w1")
    assert fence == Fence(job_id, "w1", 1)
    assert claim(job_id, "w2") is None
    row = job(job_id)
    assert (row.status, row.lease_owner, row.attempts) == (JobStatus.running, "w1", 1)


def test_a_worker_whose_lease_was_taken_over_can_write_nothing(
    configured: Path, sent: list[str]
) -> None:
    job_id = add_job()
    old = claim(job_id, "w1", lease=0.2)
    assert old is not None
    time.sleep(0.5)
    assert reap_once(get_settings())["requeued"] == 1
    new = claim(job_id, "w2")
    assert new is not None and new.attempt == 2
    with session_scope() as session:
        repo = JobRepository(session)
        assert repo.renew(old, 60, {}) is None
        assert repo.fail(old, "x", "y") is None
        assert repo.succeed(old, trained_model(job_id)) is None
        with pytest.raises(LeaseLost):
            repo.append_event(old, EventType.train_loss, {"step": 1})
        with pytest.raises(LeaseLost):
            repo.add_metric_once(old, epoch_metric(job_id))
        with pytest.raises(LeaseLost):
            repo.record_checkpoint(old, "x/attempt-1/checkpoints/checkpoint-1", {})
    # Same owner name, earlier attempt: the attempt number is part of the fence.
    with session_scope() as session:
        assert JobRepository(session).renew(Fence(job_id, "w2", 1), 60, {}) is None
    model = trained_model(job_id)
    with session_scope() as session:
        assert JobRepository(session).succeed(new, model) is JobStatus.succeeded
    row = job(job_id)
    assert (row.status, row.attempts, row.model_id) == (JobStatus.succeeded, 2, model.id)
    assert events(job_id)[-1] == "succeeded"


@pytest.mark.parametrize("path", ["reaper", "shutdown", "crash"])
def test_a_cancel_is_honoured_after_a_crash_a_shutdown_or_a_lost_worker(
    configured: Path, sent: list[str], path: str
) -> None:
    """Defect 1: a requested cancel used to send the job back to `queued` forever."""
    job_id = add_job()
    fence = claim(job_id, "w1")
    assert fence is not None
    request_cancel(job_id)
    if path == "reaper":
        expire_now(job_id)
        assert reap_once(get_settings())["cancelled"] == 1
    else:
        reason = RetryReason.worker_shutdown if path == "shutdown" else RetryReason.training_error
        with session_scope() as session:
            ended = JobRepository(session).give_back(fence, reason, "boom", 3)
        assert ended is JobStatus.cancelled
    assert job(job_id).status is JobStatus.cancelled
    assert events(job_id)[-2:] == ["cancel_requested", "cancelled"]
    assert sent == []  # no message for a job that has ended


def test_a_job_queued_with_a_cancel_requested_ends_cancelled_at_its_claim(
    configured: Path,
) -> None:
    job_id = add_job()
    with session_scope() as session:  # a row left so by an older version
        found = JobRepository(session).get(job_id)
        assert found is not None
        found.cancel_requested = True
    assert claim(job_id, "w1") is None
    assert job(job_id).status is JobStatus.cancelled


def test_leases_use_the_database_clock(
    configured: Path, sent: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 3: a worker whose clock is 90 s behind had its live job reaped."""
    slow = datetime.now(UTC) - timedelta(seconds=90)
    monkeypatch.setattr("app.jobs.repository.utcnow", lambda: slow)
    job_id = add_job()
    assert claim(job_id, "slow-worker", lease=60) is not None
    monkeypatch.undo()
    assert reap_once(get_settings())["requeued"] == 0
    assert job(job_id).status is JobStatus.running
    expires = job(job_id).lease_expires_at
    assert abs((expires - datetime.now(UTC)).total_seconds() - 60) < 10


def test_shutdowns_are_not_failures_but_crashes_are(configured: Path, sent: list[str]) -> None:
    """Defect 8: three deploys then one crash used to fail a job (max 3 attempts)."""
    job_id = add_job()
    for n in range(3):
        fence = claim(job_id, f"w{n}")
        assert fence is not None
        with session_scope() as session:
            repo = JobRepository(session)
            assert repo.give_back(fence, RetryReason.worker_shutdown, "deploy", 3) is (
                JobStatus.queued
            )
    fence = claim(job_id, "w3")
    assert fence is not None
    with session_scope() as session:
        ended = JobRepository(session).give_back(fence, RetryReason.training_error, "boom", 3)
    assert ended is JobStatus.queued
    row = job(job_id)
    assert (row.attempts, row.failures) == (4, 1)
    for n in (4, 5):
        fence = claim(job_id, f"w{n}")
        assert fence is not None
        with session_scope() as session:
            ended = JobRepository(session).give_back(fence, RetryReason.training_error, "boom", 3)
    assert ended is JobStatus.failed
    row = job(job_id)
    assert (row.status, row.error_code, row.failures) == (JobStatus.failed, "training_error", 3)


def test_the_reaper_counts_lost_workers_as_failures_then_fails_the_job(
    configured: Path, sent: list[str]
) -> None:
    settings = get_settings()
    settings.max_attempts = 2
    job_id = add_job()
    assert claim(job_id, "w1") is not None
    expire_now(job_id)
    assert reap_once(settings)["requeued"] == 1
    row = job(job_id)
    assert (row.status, row.lease_owner, row.failures) == (JobStatus.queued, None, 1)
    assert sent == [job_id]
    assert claim(job_id, "w2") is not None
    expire_now(job_id)
    assert reap_once(settings)["failed"] == 1
    row = job(job_id)
    assert (row.status, row.error_code) == (JobStatus.failed, "worker_lost")


def test_the_reaper_resends_only_lost_messages(
    configured: Path, sent: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 9: every queued job's message used to be resent every 10 minutes."""
    settings = get_settings()
    broker = {"id": "redis-run-1"}
    monkeypatch.setattr("app.queue.broker_instance", lambda _settings: broker["id"])
    monkeypatch.setattr("app.jobs.reaper.broker_instance", lambda _settings: broker["id"])
    monkeypatch.setattr("app.jobs.reaper.SEND_GRACE_SECONDS", 0.0)
    waiting, never_sent = add_job(), add_job()
    from app.queue import send_now

    send_now([waiting])  # sent and confirmed
    assert sent == [waiting]
    time.sleep(0.05)
    assert reap_once(settings)["resent"] == 1  # only the one never sent
    assert sent == [waiting, never_sent]
    with session_scope() as session:  # as if both had waited an hour behind busy workers
        for job_id in (waiting, never_sent):
            found = JobRepository(session).get(job_id)
            assert found is not None and found.enqueued_at is not None
            found.enqueued_at = found.enqueued_at - timedelta(hours=1)
    assert reap_once(settings)["resent"] == 0
    broker["id"] = "redis-run-2"  # Redis restarted without persistence: its queue is gone
    assert reap_once(settings)["resent"] == 2
    assert sorted(sent[2:]) == sorted([waiting, never_sent])
    assert reap_once(settings)["resent"] == 0


def test_metrics_rows_are_written_once_per_epoch(configured: Path) -> None:
    job_id = add_job()
    fence = claim(job_id, "w1")
    assert fence is not None
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
            JobRepository(session).add_metric_once(fence, row)
    with session_scope() as session:
        rows = JobRepository(session).list_metrics(job_id)
        assert [(r.epoch, r.train_loss) for r in rows] == [(1, 0.5)]


def test_a_succeeded_job_cannot_be_cancelled_and_a_cancel_beats_the_commit(
    configured: Path,
) -> None:
    """Defect 10 (the database half): a cancel that arrives while the model is being saved
    wins over the commit; one that arrives after it loses."""
    job_id = add_job()
    fence = claim(job_id, "w1")
    assert fence is not None
    request_cancel(job_id)
    with session_scope() as session:
        assert JobRepository(session).succeed(fence, trained_model(job_id)) is (JobStatus.cancelled)
    row = job(job_id)
    assert (row.status, row.model_id) == (JobStatus.cancelled, None)
    with session_scope() as session:
        assert not JobRepository(session).cancel(job_id)


@pytest.mark.postgres
def test_worker_writes_and_cancels_never_deadlock_on_postgres(
    postgres_url: str, configured: Path
) -> None:
    """Defect 11: add_metric_once took the foreign key's share lock, then FOR UPDATE, while
    cancel took the row lock, then FOR UPDATE: a deadlock (40P01, a spurious 503). Every
    writer now locks the job's row first."""
    import threading

    if not get_settings().sqlalchemy_url.startswith("postgresql"):
        pytest.skip("PostgreSQL row locks")
    errors: list[BaseException] = []
    for round_ in range(25):
        job_id = add_job()
        fence = claim(job_id, "w1")
        assert fence is not None
        barrier = threading.Barrier(3)

        def metrics(fence: Fence = fence, job_id: str = job_id, barrier: Any = barrier) -> None:
            barrier.wait()
            with session_scope() as session:
                JobRepository(session).add_metric_once(fence, epoch_metric(job_id, 1))

        def loss(fence: Fence = fence, barrier: Any = barrier) -> None:
            barrier.wait()
            with session_scope() as session:
                JobRepository(session).append_event(fence, EventType.train_loss, {"step": 1})

        def cancel(job_id: str = job_id, barrier: Any = barrier) -> None:
            barrier.wait()
            with session_scope() as session:
                JobRepository(session).cancel(job_id)

        def run(target: Any) -> None:
            try:
                target()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(t,)) for t in (metrics, loss, cancel)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, f"round {round_}: {errors!r}"
