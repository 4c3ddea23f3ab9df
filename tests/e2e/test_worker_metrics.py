"""End to end: the worker's training process serves Prometheus metrics of the job it trained."""

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.service import Service, free_port
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows

pytestmark = pytest.mark.e2e


@pytest.fixture
def service(tmp_path: Path, tiny_model_dir: Path) -> Iterator[Service]:
    env = {
        "HF_HUB_OFFLINE": "1",
        "TUNESERVE_DATA_DIR": str(tmp_path / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(tiny_model_dir.parent),
        "TUNESERVE_QUEUE_NAME": f"e2e-{tmp_path.name}-{uuid.uuid4().hex[:8]}",
        "TUNESERVE_WORKER_METRICS_PORT": str(free_port()),
    }
    service = Service(env, tmp_path, embedded=True)
    try:
        yield service.start()
    finally:
        service.stop()


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_worker_exports_training_metrics(service: Service) -> None:
    train, dev = service.upload(sentiment_rows(64)), service.upload(sentiment_rows(16, seed=1))
    hyperparameters = {"num_train_epochs": 1, "per_device_train_batch_size": 8, "seed": 1}
    job = service.create_job(tiny_spec(train, dev, hyperparameters=hyperparameters))
    done = service.wait_for(job["id"], timeout=120)
    assert done["status"] == "succeeded", service.logs()

    # The runner counts the outcome just after the job's row says succeeded: poll briefly.
    url = f"http://127.0.0.1:{service.env['TUNESERVE_WORKER_METRICS_PORT']}/metrics"
    succeeded = ("tuneserve_jobs_finished_total", frozenset({("outcome", "succeeded")}))
    deadline = time.monotonic() + 10
    while (samples := scrape(url)).get(succeeded) != 1 and time.monotonic() < deadline:
        time.sleep(0.2)

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, frozenset(labels.items())))

    assert value("tuneserve_train_steps_total") == done["progress"]["total_steps"] == 8
    assert value("tuneserve_train_samples_total") == 64
    assert (value("tuneserve_train_samples_per_second") or 0) > 0
    assert value("tuneserve_train_step_seconds_count") == 8
    assert (value("tuneserve_train_step_seconds_sum") or 0) > 0
    assert value("tuneserve_jobs_finished_total", outcome="succeeded") == 1
    assert value("tuneserve_jobs_finished_total", outcome="failed") == 0
    assert value("process_resident_memory_bytes")  # the training process's own runtime series

    # The API's /metrics sees the job finished and nothing waiting.
    api = scrape(f"{service.url}/metrics")
    assert api[("tuneserve_jobs", frozenset({("status", "succeeded")}))] == 1
    assert api[("tuneserve_queue_depth", frozenset())] == 0
