"""One job on two processes (DDP with gloo on the CPU) through a real worker: the same rows and
events as on one process, one model; a cancel and a kill -9 of the worker leave no rank."""

import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_faults import make_service as faults_service  # noqa: E402
from tests.support.service import Service
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows
from worker.distributed import ENTRY_MODULE

pytestmark = pytest.mark.e2e


def make_service(tmp_path: Path, tiny_model_dir: Path, pg: str, redis: str, **env: str) -> Service:
    """test_faults' production-mode service, with a lease long enough for two ranks' start."""
    return faults_service(tmp_path, tiny_model_dir, pg, redis, TUNESERVE_LEASE_SECONDS="6", **env)


@pytest.fixture
def service(
    tmp_path: Path, tiny_model_dir: Path, postgres_url: str, redis_url: str
) -> Iterator[Service]:
    service = make_service(tmp_path, tiny_model_dir, postgres_url, redis_url)
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


def test_two_processes_match_one_and_a_cancel_ends_every_rank(service: Service) -> None:
    train, dev = service.upload(sentiment_rows(160)), service.upload(sentiment_rows(40, seed=1))
    one = service.create_job(spec(train, dev, processes=1))
    two = service.create_job(spec(train, dev, processes=2))
    for job in (one, two):
        done = service.wait_for(job["id"], timeout=240)
        assert done["status"] == "succeeded", service.logs()
        assert done["progress"]["step"] == done["progress"]["total_steps"] == 40
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

    # A cancel reaches every rank.
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


def test_warm_shutdown_checkpoints_every_rank_and_the_job_resumes(
    tmp_path: Path, tiny_model_dir: Path, postgres_url: str, redis_url: str
) -> None:
    # Slower steps: the stop lands mid-epoch however busy the machine is (a stop at an epoch's
    # last step would checkpoint that epoch before its evaluation, as on one process).
    service = make_service(
        tmp_path,
        tiny_model_dir,
        postgres_url,
        redis_url,
        TUNESERVE_FAULT_INJECTION_STEP_DELAY_SECONDS="0.2",
    )
    try:
        service.start()
        train = service.upload(sentiment_rows(240))
        dev = service.upload(sentiment_rows(40, seed=1))
        job = service.create_job(spec(train, dev, processes=2, epochs=3))
        wait_until(lambda: service.job(job["id"])["progress"]["epoch"] > 1.1, timeout=240)
        worker = service.processes["worker"]
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=90)
        assert rank_processes(job["id"]) == []
        state = service.job(job["id"])
        assert state["status"] == "queued" and state["error"] is None
        service.start_worker("worker2")
        done = service.wait_for(job["id"], timeout=300)
        assert done["status"] == "succeeded", service.logs()
        assert done["attempts"] == 2
        assert [row["epoch"] for row in service.metrics(job["id"])] == [1, 2, 3]
        resumed = re.findall(r"resumes from \S*checkpoint-(\d+)", service.logs())
        assert len(resumed) == 1 and 30 < int(resumed[0]) < 60  # mid-epoch 2, where it stopped
    finally:
        service.stop()


def test_a_crashing_rank_fails_the_attempt(
    tmp_path: Path, tiny_model_dir: Path, postgres_url: str, redis_url: str
) -> None:
    service = make_service(
        tmp_path, tiny_model_dir, postgres_url, redis_url, TUNESERVE_MAX_ATTEMPTS="1"
    )
    try:
        service.start()
        long_rows = [{"sentence": " ".join(["good"] * 120), "label": "pos"} for _ in range(8)]
        long_rows += [{"sentence": " ".join(["bad"] * 120), "label": "neg"} for _ in range(8)]
        poison = service.upload(long_rows)
        # max_length 128 exceeds the tiny model's 64 positions: every rank crashes in forward.
        hyperparameters = {"num_train_epochs": 1, "max_length": 128, "processes": 2}
        job = service.create_job(tiny_spec(poison, poison, hyperparameters=hyperparameters))
        failed = service.wait_for(job["id"], timeout=240)
        assert failed["status"] == "failed"
        assert failed["error"]["code"] == "training_error"
        # The rank's own error, as a crash of the one-process path reads.
        assert "RuntimeError: The size of tensor a" in failed["error"]["message"]
        assert rank_processes(job["id"]) == []
    finally:
        service.stop()
