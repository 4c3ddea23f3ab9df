"""One job on two processes (DDP with gloo on the CPU) through a real worker: the same rows and
events as on one process, one model; a cancel and a kill -9 of the worker leave no rank."""

import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.service import Service
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows
from worker.distributed import ENTRY_MODULE

pytestmark = pytest.mark.e2e


@pytest.fixture
def service(
    tmp_path: Path, tiny_model_dir: Path, postgres_url: str, redis_url: str
) -> Iterator[Service]:
    env = {
        "TUNESERVE_DATA_DIR": str(tmp_path / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(tiny_model_dir.parent),
        "TUNESERVE_QUEUE_NAME": f"ddp-{tmp_path.name}-{uuid.uuid4().hex[:8]}",
        "TUNESERVE_DATABASE_URL": postgres_url,
        "TUNESERVE_BROKER_URL": redis_url,
        "TUNESERVE_HEARTBEAT_SECONDS": "0.5",
        "TUNESERVE_LEASE_SECONDS": "6",
        "TUNESERVE_REAPER_INTERVAL_SECONDS": "1",
        "TUNESERVE_FAULT_INJECTION_STEP_DELAY_SECONDS": "0.05",
        "HF_HUB_OFFLINE": "1",
    }
    service = Service(env, tmp_path, embedded=False)
    try:
        yield service.start()
    finally:
        service.stop()


def spec(train: str, dev: str, processes: int, epochs: int = 2) -> dict[str, Any]:
    hyperparameters = {
        "num_train_epochs": epochs,
        "learning_rate": 5e-3,
        "seed": 1,
        "processes": processes,
    }
    return tiny_spec(train, dev, hyperparameters=hyperparameters)


def rank_processes(job_id: str) -> list[int]:
    """Live processes of `job_id`'s ranks and their launcher (their command lines name the
    entry module and the job's folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and ENTRY_MODULE.encode() in cmdline and job_id.encode() in cmdline:
            found.append(int(entry.name))
    return found


def wait_until(predicate: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached")


def event_types(service: Service, job_id: str) -> Counter[str]:
    with service.client() as client:
        events = client.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
    return Counter(event["type"] for event in events)


def test_two_processes_match_one(service: Service) -> None:
    train, dev = service.upload(sentiment_rows(160)), service.upload(sentiment_rows(40, seed=1))
    one = service.create_job(spec(train, dev, processes=1))
    two = service.create_job(spec(train, dev, processes=2))
    for job in (one, two):
        assert service.wait_for(job["id"], timeout=240)["status"] == "succeeded", service.logs()
    rows = {name: service.metrics(job["id"]) for name, job in (("one", one), ("two", two))}
    assert [(r["epoch"], r["step"]) for r in rows["two"]] == [(1, 20), (2, 40)]
    assert [(r["epoch"], r["step"]) for r in rows["one"]] == [(1, 20), (2, 40)]
    for a, b in zip(rows["one"], rows["two"], strict=True):
        assert set(a["metrics"]) == set(b["metrics"])
        # The same optimisation (the batch is split between the ranks), in another data order.
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.25)
        assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=0.25)
    assert event_types(service, two["id"]) == event_types(service, one["id"])
    with service.client() as client:
        models = client.get("/v1/models").json()["data"]
    assert sorted(m["job_id"] for m in models) == sorted([one["id"], two["id"]])
    assert "trains on 2 processes" in service.logs()
    assert rank_processes(two["id"]) == []


def test_cancel_ends_every_rank(service: Service) -> None:
    train, dev = service.upload(sentiment_rows(160)), service.upload(sentiment_rows(40, seed=1))
    job = service.create_job(spec(train, dev, processes=2, epochs=50))
    wait_until(lambda: service.job(job["id"])["progress"]["step"] > 3)
    assert len(rank_processes(job["id"])) == 3  # the launcher and two ranks
    with service.client() as client:
        assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    assert service.wait_for(job["id"], timeout=60)["status"] == "cancelled"
    wait_until(lambda: rank_processes(job["id"]) == [], timeout=20)


def test_worker_killed_leaves_no_rank_and_the_job_resumes(service: Service) -> None:
    train, dev = service.upload(sentiment_rows(160)), service.upload(sentiment_rows(40, seed=1))
    job = service.create_job(spec(train, dev, processes=2, epochs=3))
    wait_until(lambda: service.job(job["id"])["progress"]["epoch"] > 1.2)
    assert len(rank_processes(job["id"])) == 3  # the launcher and two ranks
    worker = service.processes["worker"]
    # The Celery main process only: its pool process, the launcher and the ranks follow it.
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    wait_until(lambda: rank_processes(job["id"]) == [], timeout=20)
    service.start_worker("worker2")
    done = service.wait_for(job["id"], timeout=240)
    assert done["status"] == "succeeded", service.logs()
    assert done["attempts"] == 2
    assert [row["epoch"] for row in service.metrics(job["id"])] == [1, 2, 3]
    assert "resumes from" in service.logs() and "checkpoint-20" in service.logs()
    with service.client() as client:
        models = client.get("/v1/models").json()["data"]
    assert [m["job_id"] for m in models] == [job["id"]]
