"""GET /metrics in-process on SQLite and PostgreSQL: HTTP, jobs, queue depth and predict."""

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError

from app.core.config import get_settings
from app.jobs.repository import JobRepository
from app.models.locator import trained_model_dir
from app.observability import worker as worker_metrics
from tests.support.auth import issue_test_key
from tests.support.rows import add_trained_model
from tests.support.specs import tiny_spec
from tests.support.sse import parse_sse
from tests.support.tiny_model import sentiment_rows


@pytest.fixture
def client(configured: Path, database_url: str) -> Iterator[TestClient]:
    from app.main import create_app

    key = issue_test_key(database_url)
    with TestClient(create_app(), headers={"Authorization": f"Bearer {key}"}) as test_client:
        yield test_client


def scrape(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of GET /metrics (sent without a key), by (name, labels)."""
    response = client.get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def upload_rows(client: TestClient, rows: list[dict[str, str]]) -> str:
    content = "".join(json.dumps(row) + "\n" for row in rows)
    response = client.post("/v1/files", files={"file": ("d.jsonl", content)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def create_jobs(client: TestClient, count: int) -> list[str]:
    train, dev = upload_rows(client, sentiment_rows(20)), upload_rows(client, sentiment_rows(6))
    ids = []
    for _ in range(count):
        response = client.post("/v1/jobs", json=tiny_spec(train, dev))
        assert response.status_code == 201, response.text
        ids.append(str(response.json()["id"]))
    return ids


def test_requests_counted_by_route_template(client: TestClient) -> None:
    for _ in range(2):
        assert client.get("/healthz").status_code == 200
    assert client.get("/v1/jobs/job_abc123").status_code == 404
    assert client.get("/no/such/path").status_code == 404
    assert client.get("/v1/jobs", headers={"Authorization": ""}).status_code == 401

    samples = scrape(client)
    requests = "tuneserve_http_requests_total"
    assert value(samples, requests, method="GET", route="/healthz", status="200") == 2
    assert value(samples, requests, method="GET", route="/v1/jobs/{job_id}", status="404") == 1
    assert value(samples, requests, method="GET", route="unmatched", status="404") == 1
    assert value(samples, requests, method="GET", route="/v1/jobs", status="401") == 1
    duration = "tuneserve_http_request_duration_seconds_count"
    assert value(samples, duration, method="GET", route="/v1/jobs/{job_id}") == 1
    assert value(samples, duration, method="GET", route="/healthz") == 2
    routes = {dict(labels).get("route") for _, labels in samples}
    assert not {"/v1/jobs/job_abc123", "/no/such/path"} & routes

    # The first scrape is counted once it has answered; /metrics is not in the API schema.
    again = scrape(client)
    assert value(again, requests, method="GET", route="/metrics", status="200") == 1
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_jobs_by_status_and_queue_depth(client: TestClient) -> None:
    samples = scrape(client)
    assert value(samples, "tuneserve_queue_depth") == 0
    for status in ("queued", "running", "succeeded", "failed", "cancelled"):
        assert value(samples, "tuneserve_jobs", status=status) == 0

    ids = create_jobs(client, 3)
    assert client.post(f"/v1/jobs/{ids[0]}/cancel").status_code == 200
    # The event stream of a finished job ends by itself: streaming passes the middleware.
    with client.stream("GET", f"/v1/jobs/{ids[0]}/events/stream") as response:
        assert response.status_code == 200
        events = [event["event"] for event in parse_sse(response.iter_lines())]
    assert events == ["queued", "cancelled"]

    samples = scrape(client)
    assert value(samples, "tuneserve_jobs", status="queued") == 2
    assert value(samples, "tuneserve_jobs", status="cancelled") == 1
    assert value(samples, "tuneserve_jobs", status="running") == 0
    assert value(samples, "tuneserve_queue_depth") == 2
    requests = "tuneserve_http_requests_total"
    assert value(samples, requests, method="POST", route="/v1/jobs", status="201") == 3
    stream = "/v1/jobs/{job_id}/events/stream"
    assert value(samples, requests, method="GET", route=stream, status="200") == 1


def test_scrape_answers_while_the_database_is_down(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(_self: JobRepository) -> dict[str, int]:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(JobRepository, "count_by_status", refuse)
    with caplog.at_level(logging.WARNING, logger="app.observability.api"):
        samples = scrape(client)
    assert value(samples, "tuneserve_queue_depth") is None
    assert not [key for key in samples if key[0] == "tuneserve_jobs"]
    assert "cannot count jobs" in caplog.text
    assert value(samples, "tuneserve_predict_batch_size_count") is not None


def test_predict_records_batch_size_and_latency(client: TestClient, tiny_model_dir: Path) -> None:
    job_id = create_jobs(client, 1)[0]
    model_id = add_trained_model("tests", job_id, labels=["LABEL_0", "LABEL_1"])
    shutil.copytree(tiny_model_dir, trained_model_dir(get_settings(), model_id))

    before = scrape(client)
    answer = client.post(f"/v1/models/{model_id}/predict", json={"inputs": ["good", "bad", "a"]})
    assert answer.status_code == 200, answer.text
    after = scrape(client)

    def delta(name: str) -> float:
        return (value(after, name) or 0.0) - (value(before, name) or 0.0)

    assert delta("tuneserve_predict_batch_size_count") == 1
    assert delta("tuneserve_predict_batch_size_sum") == 3
    assert delta("tuneserve_predict_duration_seconds_count") == 1
    assert delta("tuneserve_predict_duration_seconds_sum") > 0
    route = "/v1/models/{model_id}/predict"
    requests = "tuneserve_http_requests_total"
    assert value(after, requests, method="POST", route=route, status="200") == 1


def test_each_app_has_its_own_registry(configured: Path) -> None:
    from app.main import create_app

    first, second = TestClient(create_app()), TestClient(create_app())
    first.get("/healthz")
    first.get("/healthz")
    second.get("/healthz")
    requests = "tuneserve_http_requests_total"
    labels = {"method": "GET", "route": "/healthz", "status": "200"}
    assert value(scrape(first), requests, **labels) == 2
    assert value(scrape(second), requests, **labels) == 1


# --- worker metrics, without a worker ----------------------------------------------------


def worker_sample(name: str, **labels: str) -> float:
    return worker_metrics.WORKER_REGISTRY.get_sample_value(name, labels) or 0.0


def test_step_meter_feeds_steps_samples_and_throughput() -> None:
    steps, samples = (
        worker_sample("tuneserve_train_steps_total"),
        worker_sample("tuneserve_train_samples_total"),
    )
    observed = worker_sample("tuneserve_train_step_seconds_count")
    meter = worker_metrics.StepMeter()
    meter.start(samples_per_step=16)
    meter.step_end()  # no step began: nothing recorded
    for _ in range(3):
        meter.step_begin()
        meter.step_end()
    assert worker_sample("tuneserve_train_steps_total") - steps == 3
    assert worker_sample("tuneserve_train_samples_total") - samples == 48
    assert worker_sample("tuneserve_train_step_seconds_count") - observed == 3
    assert worker_sample("tuneserve_train_samples_per_second") > 0


def test_finished_jobs_counted_by_outcome() -> None:
    name = "tuneserve_jobs_finished_total"
    outcomes = ("succeeded", "failed", "cancelled", "retried")
    before = {outcome: worker_sample(name, outcome=outcome) for outcome in outcomes}
    for result in ("succeeded", "failed:invalid_labels", "cancelled", "requeued", "lease_lost"):
        worker_metrics.record_job_finished(result)
    for outcome in outcomes:
        assert worker_sample(name, outcome=outcome) - before[outcome] == 1
    assert worker_metrics.WORKER_REGISTRY.get_sample_value(name, {"outcome": "lease_lost"}) is None


def test_worker_metrics_server_port_zero_or_taken_is_not_fatal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    monkeypatch.setattr(worker_metrics, "_server_port", None)
    assert worker_metrics.start_worker_metrics_server("127.0.0.1", 0) is False
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        with caplog.at_level(logging.WARNING, logger="app.observability.worker"):
            assert worker_metrics.start_worker_metrics_server("127.0.0.1", port) is False
    assert "worker metrics not served" in caplog.text
