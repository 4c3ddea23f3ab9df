"""The job event log: written with each change of state, paged, and streamed as SSE."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.db import session_scope
from app.jobs.repository import JobRepository
from app.jobs.states import JobStatus, RetryReason
from app.main import create_app
from tests.support.auth import issue_test_key
from tests.support.rows import epoch_metric, model_row
from tests.support.specs import tiny_spec
from tests.support.sse import parse_sse
from tests.support.tiny_model import sentiment_rows


@pytest.fixture
def client(configured: Path, database_url: str) -> Iterator[TestClient]:
    key = issue_test_key(database_url)
    with TestClient(create_app(), headers={"Authorization": f"Bearer {key}"}) as test_client:
        yield test_client


def new_job(client: TestClient) -> str:
    content = "".join(
        f'{{"sentence": "{r["sentence"]}", "label": "{r["label"]}"}}\n' for r in sentiment_rows(10)
    )
    file_id = client.post("/v1/files", files={"file": ("d.jsonl", content)}).json()["id"]
    response = client.post("/v1/jobs", json=tiny_spec(file_id, file_id))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def events(client: TestClient, job_id: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/v1/jobs/{job_id}/events", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def run_like_a_worker(job_id: str) -> None:
    """The repository calls a worker makes: claim, an epoch's metrics, release, claim, finish."""
    with session_scope() as session:
        repo = JobRepository(session)
        first = repo.claim(job_id, "w1", 60)
        assert first is not None
        repo.add_metric_once(first, epoch_metric(job_id))
        shutdown = RetryReason.worker_shutdown
        assert repo.give_back(first, shutdown, "The worker stopped.", 3) is JobStatus.queued
        second = repo.claim(job_id, "w2", 60)
        assert second is not None
        # the resumed run evaluates epoch 1 again: no second event
        repo.add_metric_once(second, epoch_metric(job_id))
        job = repo.get(job_id)
        assert job is not None
        model = model_row(job.tenant_id, job_id)
        assert repo.succeed(second, model) is JobStatus.succeeded


def test_each_change_of_state_is_an_event_in_order(client: TestClient) -> None:
    job_id = new_job(client)
    run_like_a_worker(job_id)
    log = events(client, job_id)["data"]
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert [e["type"] for e in log] == [
        "queued",
        "started",
        "epoch_finished",
        "retried",
        "started",
        "succeeded",
    ]
    assert log[1]["data"] == {"attempt": 1, "worker": "w1"}
    assert log[2]["data"]["metrics"] == {"accuracy": 0.5} and log[2]["data"]["epoch"] == 1
    assert log[3]["data"]["reason"] == "worker_shutdown"
    assert log[4]["data"]["attempt"] == 2
    assert log[5]["data"]["model_id"].startswith("mdl_")


def test_pages_with_a_cursor(client: TestClient) -> None:
    job_id = new_job(client)
    run_like_a_worker(job_id)
    seen, cursor = [], None
    while True:
        page = events(client, job_id, limit=4, **({"cursor": cursor} if cursor else {}))
        seen += [e["seq"] for e in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [1, 2, 3, 4, 5, 6]
    for forged in ("x", "²", "١٢"):  # non-ASCII digits passed isdigit() and failed int(): 500
        bad = client.get(f"/v1/jobs/{job_id}/events", params={"cursor": forged})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"
    stream = client.get(f"/v1/jobs/{job_id}/events/stream", params={"after": "²"})
    assert stream.status_code == 400


def test_stream_replays_from_last_event_id_and_ends_with_the_job(client: TestClient) -> None:
    job_id = new_job(client)
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200

    def stream(**headers: str) -> list[dict[str, Any]]:
        url = f"/v1/jobs/{job_id}/events/stream"
        with client.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            return list(parse_sse(response.iter_lines()))

    everything = stream()
    assert [(e["id"], e["event"]) for e in everything] == [("1", "queued"), ("2", "cancelled")]
    assert everything[1]["data"]["data"] == {"while": "queued"}
    assert [e["id"] for e in stream(**{"Last-Event-ID": "1"})] == ["2"]
    bad = client.get(f"/v1/jobs/{job_id}/events/stream", headers={"Last-Event-ID": "-3"})
    assert bad.status_code == 400


def test_other_tenants_get_404(client: TestClient, database_url: str) -> None:
    job_id = new_job(client)
    other = {"Authorization": f"Bearer {issue_test_key(database_url, tenant='other')}"}
    for path in ("events", "events/stream"):
        response = client.get(f"/v1/jobs/{job_id}/{path}", headers=other)
        assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"


def test_metrics_png_draws_the_curves(client: TestClient, database_url: str) -> None:
    job_id = new_job(client)
    run_like_a_worker(job_id)
    response = client.get(f"/v1/jobs/{job_id}/metrics.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n") and len(response.content) > 10_000
    other = {"Authorization": f"Bearer {issue_test_key(database_url, tenant='other')}"}
    assert client.get(f"/v1/jobs/{job_id}/metrics.png", headers=other).status_code == 404
