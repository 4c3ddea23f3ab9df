"""How many processes train a job, their Trainer arguments, and how the pool process reads the
end of a run of several (worker/distributed.py); the runs themselves: tests/e2e."""

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.core.redact import public_message
from app.jobs.schemas import Hyperparameters
from app.jobs.states import StopReason
from worker import training
from worker.distributed import Control, RankCrashed, _failure, processes_for, write_json
from worker.errors import JobFailure, TrainingInterrupted
from worker.training import training_arguments


def settings(tmp_path: Path, processes: int | str = 1) -> Settings:
    return Settings(data_dir=tmp_path, processes_per_job=processes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("setting", "devices", "batch", "expected"),
    [
        (1, 0, 8, 1),  # the default: in the pool process, as before
        (2, 0, 8, 2),  # gloo processes on a CPU
        ("auto", 0, 8, 1),
        ("auto", 4, 8, 4),
        (4, 2, 8, 2),  # capped to the GPUs
        (4, 0, 6, 3),  # the most that split the batch evenly
        ("auto", 8, 12, 6),
    ],
)
def test_the_worker_setting(
    tmp_path: Path, setting: int | str, devices: int, batch: int, expected: int
) -> None:
    hp = Hyperparameters(per_device_train_batch_size=batch)
    assert processes_for(settings(tmp_path, setting), hp, devices) == expected


def test_a_jobs_own_count_wins_and_is_never_capped(tmp_path: Path) -> None:
    assert processes_for(settings(tmp_path, 4), Hyperparameters(processes=2), 8) == 2
    assert processes_for(settings(tmp_path), Hyperparameters(processes=2), 0) == 2
    with pytest.raises(JobFailure) as failure:
        processes_for(settings(tmp_path), Hyperparameters(processes=4), 2)
    assert failure.value.code == "not_enough_devices"
    assert "4 processes" in failure.value.message and "2 GPUs" in failure.value.message


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNESERVE_PROCESSES_PER_JOB", "auto")
    assert Settings().processes_per_job == "auto"
    monkeypatch.setenv("TUNESERVE_PROCESSES_PER_JOB", "2")
    assert Settings().processes_per_job == 2
    monkeypatch.setenv("TUNESERVE_PROCESSES_PER_JOB", "9")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    "hyperparameters",
    [
        {"processes": 0},
        {"processes": 9},
        {"processes": 3},  # 8 does not split into 3
        {"processes": 2, "per_device_train_batch_size": 5},
    ],
)
def test_invalid_process_counts_are_refused(hyperparameters: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Hyperparameters(**hyperparameters)


def test_the_batch_is_split_between_the_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Outside a torchrun rank the real arguments would look for a process group.
    monkeypatch.setattr(training, "TrainingArguments", dict)
    monkeypatch.setattr(training.torch.cuda, "is_available", lambda: False)
    hp = Hyperparameters(per_device_train_batch_size=8, precision="fp32")
    one = training_arguments(settings(tmp_path), tmp_path / "c", hp)
    two = training_arguments(settings(tmp_path), tmp_path / "c", hp, processes=2)
    assert one["per_device_train_batch_size"] == 8
    assert "ddp_backend" not in one and one["use_cpu"] is False
    assert two["per_device_train_batch_size"] == 4
    assert two["ddp_backend"] == "gloo" and two["use_cpu"] is True  # Accelerate's CPU DDP
    # The classification head's mean loss must not be multiplied by the process count.
    assert two["average_tokens_across_devices"] is False
    with pytest.raises(JobFailure):
        training_arguments(settings(tmp_path), tmp_path / "c", hp, processes=3)


@pytest.fixture
def control(tmp_path: Path) -> Control:
    return Control(tmp_path)


def test_a_failure_or_an_interruption_reported_by_a_rank(control: Control) -> None:
    write_json(control.result(0), {"end": "failure", "code": "invalid_labels", "message": "m"})
    failure = _failure(control, 2, 1, None)
    assert isinstance(failure, JobFailure) and failure.code == "invalid_labels"
    write_json(control.result(0), {"end": "interrupted", "reason": "shutdown"})
    interrupted = _failure(control, 2, 1, None)
    assert isinstance(interrupted, TrainingInterrupted)
    assert interrupted.reason is StopReason.shutdown


def test_a_crash_reads_as_the_ranks_own_error(control: Control) -> None:
    write_json(control.result(0), {"end": "ok"})  # rank 0 ended, but another rank crashed
    report = {"end": "crash", "type": "OutOfMemoryError", "message": "CUDA out of memory"}
    write_json(control.result(1), report)
    crash = _failure(control, 2, 1, None)
    assert isinstance(crash, RankCrashed)
    # What the runner reads: the message, and the name that makes it an out_of_memory retry.
    assert public_message(crash) == "OutOfMemoryError: CUDA out of memory"
    assert "OutOfMemory" in type(crash).__name__


def test_a_run_that_left_no_report(control: Control) -> None:
    crash = _failure(control, 2, -9, None)
    assert isinstance(crash, RankCrashed) and "exited with code -9" in str(crash)
    # Killed after a stop request: the stop it was asked for.
    stopped = _failure(control, 2, -9, StopReason.cancelled)
    assert isinstance(stopped, TrainingInterrupted)
    assert stopped.reason is StopReason.cancelled
