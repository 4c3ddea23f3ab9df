"""Fault injection on real processes (PostgreSQL + Redis): kill -9, SIGTERM, duplicate
delivery, poison jobs. Steps are slowed down so that a test can act mid-epoch."""

import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.service import Service
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows

pytestmark = pytest.mark.e2e


def make_service(tmp_path: Path, tiny_model_dir: Path, pg: str, redis: str, **env: str) -> Service:
    base = {
        "TUNESERVE_DATA_DIR": str(tmp_path / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(tiny_model_dir.parent),
        "TUNESERVE_QUEUE_NAME": f"faults-{tmp_path.name}-{uuid.uuid4().hex[:8]}",
        "TUNESERVE_DATABASE_URL": pg,
        "TUNESERVE_BROKER_URL": redis,
        "TUNESERVE_HEARTBEAT_SECONDS": "0.5",
        "TUNESERVE_LEASE_SECONDS": "4",
        "TUNESERVE_REAPER_INTERVAL_SECONDS": "1",
        "TUNESERVE_FAULT_INJECTION_STEP_DELAY_SECONDS": "0.05",
        "HF_HUB_OFFLINE": "1",
    }
    return Service({**base, **env}, tmp_path, embedded=False)


@pytest.fixture
def service(
    tmp_path: Path, tiny_model_dir: Path, postgres_url: str, redis_url: str
) -> Iterator[Service]:
    service = make_service(tmp_path, tiny_model_dir, postgres_url, redis_url)
    try:
        yield service.start()
    finally:
        service.stop()


def spec(train: str, dev: str, epochs: int = 3, **changes: Any) -> dict[str, Any]:
    hyperparameters = {"num_train_epochs": epochs, "learning_rate": 5e-3}
    return tiny_spec(train, dev, **{"hyperparameters": hyperparameters, **changes})


def wait_until(predicate: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached")


def assert_finished_once(service: Service, job_id: str, epochs: int) -> dict[str, Any]:
    job = service.wait_for(job_id, timeout=180)
    assert job["status"] == "succeeded", service.logs()
    assert [row["epoch"] for row in service.metrics(job_id)] == list(range(1, epochs + 1))
    with service.client() as client:
        models = client.get("/v1/models").json()["data"]
    assert [m["job_id"] for m in models].count(job_id) == 1
    return job


def resumed_checkpoints(service: Service) -> list[int]:
    return [int(n) for n in re.findall(r"resumes from \S*checkpoint-(\d+)", service.logs())]


def test_worker_killed_mid_epoch_resumes_from_checkpoint(service: Service) -> None:
    train, dev = service.upload(sentiment_rows(240)), service.upload(sentiment_rows(40, seed=1))
    job = service.create_job(spec(train, dev, epochs=3))
    wait_until(lambda: service.job(job["id"])["progress"]["epoch"] > 1.3)
    worker = service.processes["worker"]
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool process, no goodbye
    worker.wait()
    service.start_worker("worker2")
    done = assert_finished_once(service, job["id"], 3)
    assert done["attempts"] == 2
    assert resumed_checkpoints(service) == [30]  # from the end of epoch 1, not from scratch


def test_sigterm_checkpoints_and_requeues(service: Service) -> None:
    train, dev = service.upload(sentiment_rows(240)), service.upload(sentiment_rows(40, seed=1))
    job = service.create_job(spec(train, dev, epochs=3))
    wait_until(lambda: service.job(job["id"])["progress"]["epoch"] > 1.3)
    worker = service.processes["worker"]
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    state = service.job(job["id"])
    assert state["status"] == "queued"
    assert state["error"] is None
    service.start_worker("worker2")
    done = assert_finished_once(service, job["id"], 3)
    assert done["attempts"] == 2
    (step,) = resumed_checkpoints(service)
    assert 30 < step < 60  # a checkpoint taken mid-epoch 2, at the step where it stopped


def test_duplicate_delivery_never_trains_twice(
    tmp_path: Path, tiny_model_dir: Path, postgres_url: str, redis_url: str
) -> None:
    service = make_service(
        tmp_path, tiny_model_dir, postgres_url, redis_url, TUNESERVE_VISIBILITY_TIMEOUT_SECONDS="1"
    )
    try:
        service.start()
        service.start_worker("worker2")
        train, dev = service.upload(sentiment_rows(240)), service.upload(sentiment_rows(40, seed=1))
        job = service.create_job(spec(train, dev, epochs=4))
        done = assert_finished_once(service, job["id"], 4)
        assert done["attempts"] == 1
        assert "not claimed (it is running)" in service.logs()
    finally:
        service.stop()


def test_poison_job_fails_after_bounded_attempts_and_the_queue_drains(service: Service) -> None:
    long_rows = [{"sentence": " ".join(["good"] * 120), "label": "pos"} for _ in range(8)]
    long_rows += [{"sentence": " ".join(["bad"] * 120), "label": "neg"} for _ in range(8)]
    poison_file = service.upload(long_rows)
    # max_length 128 exceeds the tiny model's 64 positions: every attempt crashes in forward.
    poison = service.create_job(
        spec(poison_file, poison_file, epochs=1, hyperparameters={"max_length": 128})
    )
    train, dev = service.upload(sentiment_rows(40)), service.upload(sentiment_rows(20, seed=1))
    healthy = service.create_job(spec(train, dev, epochs=1))
    failed = service.wait_for(poison["id"], timeout=180)
    assert failed["status"] == "failed"
    assert failed["attempts"] == 3
    assert failed["error"]["code"] == "training_error"
    assert "3 attempts" in failed["error"]["message"]
    assert service.wait_for(healthy["id"], timeout=120)["status"] == "succeeded"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[int, Any]]:
    """A Redis server of this test's own, without persistence, that the test may restart."""
    import shutil
    import subprocess

    from tests.support.service import free_port

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL)
        wait_until(lambda: _redis_up(port), timeout=20)
        return process

    holder = {"process": start()}

    def restart() -> None:
        holder["process"].terminate()
        holder["process"].wait(timeout=20)
        time.sleep(2)
        holder["process"] = start()

    try:
        yield port, restart
    finally:
        holder["process"].terminate()
        holder["process"].wait(timeout=20)


def _redis_up(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def test_redis_restart_mid_job(
    tmp_path: Path,
    tiny_model_dir: Path,
    postgres_url: str,
    private_redis: tuple[int, Any],
) -> None:
    port, restart_redis = private_redis
    service = make_service(
        tmp_path,
        tiny_model_dir,
        postgres_url,
        f"redis://127.0.0.1:{port}/0",
        TUNESERVE_REQUEUE_QUEUED_AFTER_SECONDS="5",
    )
    try:
        service.start()
        train, dev = service.upload(sentiment_rows(240)), service.upload(sentiment_rows(40, seed=1))
        running = service.create_job(spec(train, dev, epochs=4))
        waiting = service.create_job(spec(train, dev, epochs=1))
        wait_until(lambda: service.job(running["id"])["progress"]["epoch"] > 1)
        restart_redis()  # every message is gone, the running job's included
        assert_finished_once(service, running["id"], 4)
        assert_finished_once(service, waiting["id"], 1)  # its lost message was sent again
    finally:
        service.stop()
