"""worker/runner.py and worker/callbacks.py with no worker process: a fake training function
and TrainerState objects fed to the callback, against the real database (SQLite, PostgreSQL)."""

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from transformers import TrainerControl, TrainerState, TrainingArguments

from app.core.config import get_settings
from app.core.db import session_scope
from app.jobs.repository import Fence, JobRepository
from app.jobs.states import EventType, JobStatus, RetryReason, StopReason
from app.jobs.sweep import sweep_leftovers
from app.storage import get_storage
from tests.integration.test_job_leases import add_job, claim, events, job, request_cancel
from worker.attempt import Attempt, adopt_checkpoint, prune_stored_checkpoints
from worker.callbacks import JobProgressCallback
from worker.errors import JobFailure, TrainingInterrupted
from worker.lease import LeaseKeeper
from worker.runner import run_job


class Result:
    def __init__(self, folder: Path) -> None:
        self.model_dir = folder
        self.labels = ["negative", "positive"]
        self.metrics = {"accuracy": 1.0}
        self.best_epoch: int | None = 1
        self.stopped_early = False
        self.task = "single_label_classification"
        self.threshold: float | None = None


def fake_model(attempt: Attempt) -> Result:
    attempt.staging.mkdir(parents=True)
    (attempt.staging / "model.safetensors").write_bytes(b"weights")
    return Result(attempt.staging)


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeCelery:
        def send_task(self, name: str, args: list[str]) -> None:
            pass

    monkeypatch.setattr("app.queue.get_celery", lambda: FakeCelery())


def test_a_finished_job_registers_its_model_and_removes_its_folders(configured: Path) -> None:
    settings = get_settings()
    job_id = add_job()
    assert run_job(settings, job_id, lambda s, attempt, lease: fake_model(attempt)) == "succeeded"
    row = job(job_id)
    assert row.status is JobStatus.succeeded
    assert (settings.models_dir / row.model_id / "model.safetensors").is_file()
    assert not (settings.jobs_dir / job_id).exists()
    assert run_job(settings, job_id) == "skipped:succeeded"  # a duplicate message


def test_an_ambiguous_commit_keeps_the_registered_model(
    configured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 2: the COMMIT went through, its answer was lost; the retry used to find the
    lease gone and delete the model the database had registered."""
    settings = get_settings()
    job_id = add_job()
    broken = {"done": False}

    def lose_the_answer(session: Session) -> None:
        if not broken["done"] and session.info.get("tuneserve_model_commit"):
            broken["done"] = True
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    original = JobRepository.succeed

    def succeed(self: JobRepository, fence: Any, model: Any, *args: Any) -> Any:
        self.session.info["tuneserve_model_commit"] = True
        return original(self, fence, model, *args)

    monkeypatch.setattr(JobRepository, "succeed", succeed)
    event.listen(Session, "after_commit", lose_the_answer)
    try:
        outcome = run_job(settings, job_id, lambda s, attempt, lease: fake_model(attempt))
    finally:
        event.remove(Session, "after_commit", lose_the_answer)
    assert broken["done"]
    assert outcome == "succeeded"
    row = job(job_id)
    assert row.status is JobStatus.succeeded
    assert (settings.models_dir / row.model_id / "model.safetensors").is_file()


def test_a_cancel_during_the_final_save_wins_and_the_model_is_discarded(
    configured: Path,
) -> None:
    """Defect 10: a cancel during the final save used to end `succeeded`."""
    settings = get_settings()
    job_id = add_job()

    def train(_settings: Any, attempt: Attempt, lease: LeaseKeeper) -> Result:
        result = fake_model(attempt)
        request_cancel(job_id)  # while the model is being written
        return result

    assert run_job(settings, job_id, train) == "cancelled"
    assert job(job_id).status is JobStatus.cancelled
    assert list(settings.models_dir.iterdir()) == []
    assert events(job_id)[-1] == "cancelled"


@pytest.mark.parametrize("stage", ["loading", "evaluating"])
def test_a_cancel_is_honoured_at_every_stage(configured: Path, stage: str) -> None:
    settings = get_settings()
    job_id = add_job()

    def train(_settings: Any, attempt: Attempt, lease: LeaseKeeper) -> Result:
        request_cancel(job_id)
        lease.beat()  # the heartbeat sees the cancel
        if stage == "loading":
            lease.check()
        else:
            JobProgressCallback(lease).on_prediction_step(*trainer_objects())
        raise AssertionError("not stopped")

    assert run_job(settings, job_id, train) == "cancelled"
    assert job(job_id).status is JobStatus.cancelled


def test_a_job_failure_ends_failed_with_its_code(configured: Path) -> None:
    settings = get_settings()
    job_id = add_job()

    def train(_settings: Any, attempt: Attempt, lease: LeaseKeeper) -> Result:
        raise JobFailure("invalid_labels", "The label column has one value.")

    assert run_job(settings, job_id, train) == "failed:invalid_labels"
    row = job(job_id)
    assert (row.status, row.error_code) == (JobStatus.failed, "invalid_labels")


def test_a_crash_is_requeued_without_server_paths_in_its_message(configured: Path) -> None:
    settings = get_settings()
    job_id = add_job()

    def train(_settings: Any, attempt: Attempt, lease: LeaseKeeper) -> Result:
        raise RuntimeError(f"cannot open {attempt.folder}/x.bin")

    assert run_job(settings, job_id, train) == "requeued"
    row = job(job_id)
    assert (row.status, row.failures, row.error_code) == (JobStatus.queued, 1, "training_error")
    assert str(settings.jobs_dir) not in (row.error_message or "")


def test_a_worker_that_lost_its_lease_writes_nothing(configured: Path) -> None:
    settings = get_settings()
    job_id = add_job()

    def train(_settings: Any, attempt: Attempt, lease: LeaseKeeper) -> Result:
        callback = JobProgressCallback(lease)
        args, state, control = trainer_objects(step=0)
        callback.on_train_begin(args, state, control)
        with session_scope() as session:  # another worker took the job over
            found = JobRepository(session).get(job_id)
            assert found is not None
            found.lease_owner = "someone-else"
        state.global_step = 10
        callback.on_log(args, state, control, logs={"loss": 0.5})
        raise AssertionError("not stopped")

    assert run_job(settings, job_id, train) == "lease_lost"
    assert events(job_id) == ["queued", "started"]
    assert list(settings.models_dir.iterdir()) == []


def trainer_objects(step: int = 10, epoch: float = 1.0) -> tuple[Any, Any, Any]:
    args = TrainingArguments(output_dir="/tmp/unused", report_to="none", use_cpu=True)
    state = TrainerState()
    state.global_step, state.epoch, state.max_steps = step, epoch, 30
    return args, state, TrainerControl()


def test_train_loss_events_are_written_once_per_step_after_a_resume(configured: Path) -> None:
    """Defect 12: a resumed attempt wrote steps before the checkpoint again."""
    settings = get_settings()
    job_id = add_job()
    first = claim(job_id, "w1")
    assert first is not None
    lease = LeaseKeeper(fence=first, settings=settings)
    callback = JobProgressCallback(lease)
    args, state, control = trainer_objects(step=0, epoch=0.0)
    callback.on_train_begin(args, state, control)
    for step in (10, 20, 30):
        state.global_step = step
        callback.on_log(args, state, control, logs={"loss": 0.5})
    with session_scope() as session:
        found = JobRepository(session).get(job_id)
        assert found is not None
        found.status, found.lease_owner = JobStatus.queued, None
    second = claim(job_id, "w2")
    assert second is not None
    resumed = JobProgressCallback(LeaseKeeper(fence=second, settings=settings))
    state.global_step = 10  # resumed from the checkpoint at step 10
    resumed.on_train_begin(args, state, control)
    for step in (20, 30, 40):
        state.global_step = step
        resumed.on_log(args, state, control, logs={"loss": 0.4})
    with session_scope() as session:
        steps = [
            e.data["step"]
            for e in JobRepository(session).events.list_of_type(job_id, EventType.train_loss)
        ]
    assert steps == [10, 20, 30, 40]


def write_checkpoint(folder: Path, complete: bool) -> None:
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"w")
    for name in ("trainer_state.json", "config.json", "scheduler.pt"):
        (folder / name).write_text("{}")
    if complete:
        (folder / "optimizer.pt").write_bytes(b"o")


def store(folder: Path, key: str) -> str:
    """Store a checkpoint folder as the tree `key` (as the callback does)."""
    get_storage(get_settings()).put_tree(f"{key}/", folder)
    return key


def test_only_a_complete_checkpoint_is_resumed_from(configured: Path, tmp_path: Path) -> None:
    """Defect 6: a checkpoint cut short by kill -9 was picked by name and failed every
    attempt. The job's row points only at complete ones; an incomplete one is refused."""
    settings = get_settings()
    write_checkpoint(tmp_path / "good", complete=True)
    write_checkpoint(tmp_path / "cut", complete=False)
    good = store(tmp_path / "good", "checkpoints/job_x/resume/checkpoint-10-a1")
    cut = store(tmp_path / "cut", "checkpoints/job_x/resume/checkpoint-20-a1")
    target = settings.jobs_dir / "job_x" / "attempt-2"
    assert adopt_checkpoint(settings, cut, target) is None
    assert adopt_checkpoint(settings, "checkpoints/job_x/resume/checkpoint-30-a1", target) is None
    adopted = adopt_checkpoint(settings, good, target)
    assert adopted == target / "checkpoints" / "checkpoint-10"
    assert (adopted / "optimizer.pt").read_bytes() == b"o"
    assert adopt_checkpoint(settings, "../../etc", target) is None


def test_the_callback_stores_each_checkpoint_and_points_the_job_at_it(configured: Path) -> None:
    """Issue 16: a checkpoint is stored (not only left on the worker's disk) before the job
    points at it, so an attempt on another machine resumes from it; older ones go."""
    settings = get_settings()
    job_id = add_job()
    fence = claim(job_id, "w1")
    assert fence is not None
    output = settings.jobs_dir / job_id / "attempt-1" / "checkpoints"
    callback = JobProgressCallback(LeaseKeeper(fence=fence, settings=settings))
    args, state, control = trainer_objects()
    args.output_dir = str(output)
    for step in (10, 20):
        write_checkpoint(output / f"checkpoint-{step}", complete=True)
        state.global_step = step
        callback.on_save(args, state, control)
    key = f"checkpoints/{job_id}/resume/checkpoint-20-a1"
    assert job(job_id).checkpoint == key
    assert [p.name for p in output.iterdir()] == ["checkpoint-20"]
    resume = f"checkpoints/{job_id}/resume/"
    stored = {info.key.split("/")[3] for info in get_storage(settings).list(resume)}
    assert stored == {"checkpoint-20-a1"}
    shutil.rmtree(settings.jobs_dir / job_id)  # the worker's machine is gone
    adopted = adopt_checkpoint(settings, key, settings.jobs_dir / job_id / "attempt-2")
    assert adopted is not None and (adopted / "optimizer.pt").read_bytes() == b"o"


def test_an_attempt_prunes_only_older_stored_checkpoints(configured: Path, tmp_path: Path) -> None:
    """An attempt that lost its lease without noticing never removes a later attempt's."""
    storage = get_storage(get_settings())
    prefix = "checkpoints/job_x/resume/"
    for name in ("checkpoint-10-a1", "checkpoint-20-a2", "checkpoint-30-a2", "checkpoint-40-a3"):
        write_checkpoint(tmp_path / name, complete=True)
        store(tmp_path / name, prefix + name)
    fence = Fence("job_x", "w2", 2)
    prune_stored_checkpoints(storage, fence, prefix + "checkpoint-30-a2")
    left = {info.key.split("/")[3] for info in storage.list(prefix)}
    assert left == {"checkpoint-30-a2", "checkpoint-40-a3"}


def test_the_sweep_removes_only_what_no_row_owns(configured: Path) -> None:
    """Defect 7: model folders whose commit never happened, and folders of ended jobs."""
    settings = get_settings()
    settings.sweep_grace_seconds = 0
    kept_job, ended_job = add_job(), add_job()
    assert claim(kept_job, "w1") is not None
    assert run_job(settings, ended_job, lambda s, attempt, lease: fake_model(attempt)) == (
        "succeeded"
    )
    registered = job(ended_job).model_id
    orphan = settings.models_dir / "mdl_orphan"
    orphan.mkdir()
    for name in (kept_job, ended_job, "job_unknown"):
        (settings.jobs_dir / name / "attempt-1").mkdir(parents=True, exist_ok=True)
    (settings.uploads_dir / ".upload-abc").write_bytes(b"half an upload")
    (settings.uploads_dir / "file_never_committed.csv").write_bytes(b"a,b\n")
    removed = sweep_leftovers(settings)
    assert removed == {"models": 1, "jobs": 2, "uploads": 2, "checkpoints": 0}
    assert list(settings.uploads_dir.iterdir()) == []
    assert not orphan.exists()
    assert (settings.models_dir / registered).is_dir()
    assert (settings.jobs_dir / kept_job).is_dir()


def test_stop_reasons_raise_at_stage_boundaries(configured: Path) -> None:
    job_id = add_job()
    fence = claim(job_id, "w1")
    assert fence is not None
    lease = LeaseKeeper(fence=fence, settings=get_settings())
    lease.check()
    lease.request_stop(StopReason.shutdown)
    lease.request_stop(StopReason.lease_lost)  # overrides: nothing more may be written
    with pytest.raises(TrainingInterrupted) as stopped:
        lease.check()
    assert stopped.value.reason is StopReason.lease_lost


def test_a_new_attempt_resumes_from_the_last_attempts_checkpoint(configured: Path) -> None:
    """The new attempt adopts the job's checkpoint before the old attempt's folder is pruned
    (pruning first made every resumed job start afresh)."""
    settings = get_settings()
    job_id = add_job()
    first = claim(job_id, "w1")
    assert first is not None
    checkpoint = settings.jobs_dir / job_id / "attempt-1" / "checkpoints" / "checkpoint-10"
    write_checkpoint(checkpoint, complete=True)
    key = store(checkpoint, f"checkpoints/{job_id}/resume/checkpoint-10-a1")
    with session_scope() as session:
        repo = JobRepository(session)
        repo.record_checkpoint(first, key, {})
        repo.give_back(first, RetryReason.worker_lost, "killed", 3)
    seen: list[Path | None] = []

    def train(_settings: Any, attempt: Attempt, lease: LeaseKeeper) -> Result:
        seen.append(attempt.resume_from)
        return fake_model(attempt)

    assert run_job(settings, job_id, train) == "succeeded"
    assert seen == [settings.jobs_dir / job_id / "attempt-2" / "checkpoints" / "checkpoint-10"]
    # Once the job has ended, nothing resumes from it: its stored checkpoints go.
    assert list(get_storage(settings).list(f"checkpoints/{job_id}/")) == []


def test_the_sweep_leaves_a_running_jobs_stored_checkpoints(
    configured: Path, tmp_path: Path
) -> None:
    """A job that runs longer than the sweep's grace kept its checkpoints only until the
    sweep took them (it removed every job's but a succeeded one's): its next attempt
    started afresh. Only a job with no row, or one that ended other than succeeded, loses
    them."""
    settings = get_settings()
    settings.sweep_grace_seconds = 0
    running, failed = add_job(), add_job()
    assert claim(running, "w1") is not None
    assert (
        run_job(
            settings,
            failed,
            lambda s, a, lease: (_ for _ in ()).throw(JobFailure("invalid_spec", "no")),
        )
        == "failed:invalid_spec"
    )
    for job_id in (running, failed, "job_unknown"):
        write_checkpoint(tmp_path / job_id, complete=True)
        store(tmp_path / job_id, f"checkpoints/{job_id}/resume/checkpoint-10-a1")
    removed = sweep_leftovers(settings)
    assert removed["checkpoints"] == 2
    left = {info.key.split("/")[1] for info in get_storage(settings).list("checkpoints/")}
    assert left == {running}


def test_a_warm_shutdown_on_an_epochs_last_step_evaluates_that_epoch_first(
    configured: Path,
) -> None:
    """A warm shutdown landing on an epoch's last step checkpointed before the epoch's
    evaluation: the resumed attempt began the next epoch, and the job never got that
    epoch's metrics row. The epoch is evaluated and saved, then training stops."""
    job_id = add_job()
    fence = claim(job_id, "w1")
    assert fence is not None
    lease = LeaseKeeper(fence=fence, settings=get_settings())
    callback = JobProgressCallback(lease)
    lease.request_stop(StopReason.shutdown)
    args, state, control = trainer_objects(step=30, epoch=1.0)
    control = callback.on_step_end(args, state, control)
    assert not control.should_training_stop  # the epoch ends first
    control.should_evaluate = control.should_save = True  # the "epoch" strategies' flags
    control = callback.on_epoch_end(args, state, control)
    assert control.should_evaluate and control.should_save and control.should_training_stop
    # Mid-epoch, a shutdown stops at once with a checkpoint and no evaluation.
    args, state, control = trainer_objects(step=40, epoch=1.33)
    control = callback.on_step_end(args, state, control)
    assert control.should_training_stop and control.should_save
    assert not control.should_evaluate
