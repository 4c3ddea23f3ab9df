"""The API in-process on SQLite and on PostgreSQL (no worker): validation, reads, cancel."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.auth import issue_test_key
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows


@pytest.fixture
def client(configured: Path, database_url: str) -> Iterator[TestClient]:
    from app.main import create_app

    key = issue_test_key(database_url)
    with TestClient(create_app(), headers={"Authorization": f"Bearer {key}"}) as test_client:
        yield test_client


def upload_rows(client: TestClient, rows: list[dict[str, str]], name: str = "d.jsonl") -> str:
    content = "".join(json.dumps(row) + "\n" for row in rows)
    response = client.post("/v1/files", files={"file": (name, content)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_upload_and_list_files(client: TestClient) -> None:
    file_id = upload_rows(client, sentiment_rows(10))
    listed = client.get("/v1/files").json()["data"]
    assert [f["id"] for f in listed] == [file_id]
    assert listed[0]["row_count"] == 10
    assert listed[0]["columns"] == ["sentence", "label"]


def test_upload_rejects_unreadable_files(client: TestClient) -> None:
    assert_error(
        client.post("/v1/files", files={"file": ("a.parquet", b"x")}),
        415,
        "unsupported_file_format",
    )
    assert_error(
        client.post("/v1/files", files={"file": ("a.csv", b"a,b\n1,2,3\n")}), 400, "invalid_file"
    )
    assert_error(client.post("/v1/files", files={"file": ("a.csv", b"")}), 400, "invalid_file")
    assert client.get("/v1/files").json()["data"] == []


def test_create_job_and_read_it(client: TestClient) -> None:
    train, dev = upload_rows(client, sentiment_rows(20)), upload_rows(client, sentiment_rows(6))
    created = client.post("/v1/jobs", json=tiny_spec(train, dev))
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["status"] == "queued"
    assert job["progress"]["total_epochs"] == 3
    assert job["spec"]["hyperparameters"]["learning_rate"] == 5e-5
    assert client.get(f"/v1/jobs/{job['id']}").json()["id"] == job["id"]
    assert client.get(f"/v1/jobs/{job['id']}/metrics").json() == {"data": []}


def test_bad_job_specs_store_nothing(client: TestClient) -> None:
    train, dev = upload_rows(client, sentiment_rows(20)), upload_rows(client, sentiment_rows(6))
    headers = {"content-type": "application/json"}
    assert_error(
        client.post("/v1/jobs", content=b"{not json", headers=headers), 400, "malformed_json"
    )
    assert_error(client.post("/v1/jobs", json={"base_model": "tiny"}), 422, "validation_error")
    assert_error(
        client.post("/v1/jobs", json=tiny_spec(train, dev, extra=1)), 422, "validation_error"
    )
    for hp in ({"num_train_epochs": 0}, {"per_device_train_batch_size": 0}):
        response = client.post("/v1/jobs", json=tiny_spec(train, dev, hyperparameters=hp))
        assert_error(response, 422, "validation_error")
    assert_error(client.post("/v1/jobs", json=tiny_spec("file_nope", dev)), 422, "unknown_file")
    response = client.post("/v1/jobs", json=tiny_spec(train, dev, text_column="nope"))
    assert_error(response, 422, "unknown_column")
    assert "'sentence'" in response.json()["error"]["message"]
    response = client.post("/v1/jobs", json=tiny_spec(train, dev, base_model="../../etc"))
    assert_error(response, 422, "invalid_base_model")
    response = client.post("/v1/jobs", json=tiny_spec(train, dev, base_model="mdl_" + "0" * 24))
    assert_error(response, 422, "unknown_base_model")
    assert client.get("/v1/jobs").json()["data"] == []


def test_list_jobs_newest_first_with_cursor_and_status(client: TestClient) -> None:
    train, dev = upload_rows(client, sentiment_rows(20)), upload_rows(client, sentiment_rows(6))
    ids = [client.post("/v1/jobs", json=tiny_spec(train, dev)).json()["id"] for _ in range(5)]
    client.post(f"/v1/jobs/{ids[0]}/cancel")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/jobs", params=params).json()
        seen += [job["id"] for job in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    cancelled = client.get("/v1/jobs", params={"status": "cancelled"}).json()["data"]
    assert [job["id"] for job in cancelled] == [ids[0]]
    assert_error(client.get("/v1/jobs", params={"cursor": "garbage!"}), 400, "invalid_cursor")
    assert_error(client.get("/v1/jobs", params={"status": "weird"}), 422, "validation_error")


def test_cancel_queued_job_and_cancel_again(client: TestClient) -> None:
    train, dev = upload_rows(client, sentiment_rows(20)), upload_rows(client, sentiment_rows(6))
    job_id = client.post("/v1/jobs", json=tiny_spec(train, dev)).json()["id"]
    cancelled = client.post(f"/v1/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    assert_error(client.post(f"/v1/jobs/{job_id}/cancel"), 409, "job_not_cancellable")
    assert_error(client.post("/v1/jobs/job_nope/cancel"), 404, "job_not_found")


def test_idempotency_key(client: TestClient) -> None:
    train, dev = upload_rows(client, sentiment_rows(20)), upload_rows(client, sentiment_rows(6))
    headers = {"Idempotency-Key": "abc-123"}
    first = client.post("/v1/jobs", json=tiny_spec(train, dev), headers=headers)
    again = client.post("/v1/jobs", json=tiny_spec(train, dev), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = tiny_spec(train, dev, hyperparameters={"num_train_epochs": 1})
    assert_error(
        client.post("/v1/jobs", json=other, headers=headers), 409, "idempotency_key_reused"
    )
    assert len(client.get("/v1/jobs").json()["data"]) == 1


def test_unknown_resources_answer_404(client: TestClient) -> None:
    assert_error(client.get("/v1/jobs/job_nope"), 404, "job_not_found")
    assert_error(client.get("/v1/jobs/job_nope/metrics"), 404, "job_not_found")
    assert_error(client.get("/v1/models/mdl_nope"), 404, "model_not_found")
    response = client.post("/v1/models/mdl_nope/predict", json={"inputs": ["hi"]})
    assert_error(response, 404, "model_not_found")
    assert_error(client.get("/v1/nothing"), 404, "not_found")


def test_predict_input_validation(client: TestClient) -> None:
    response = client.post("/v1/models/mdl_nope/predict", json={"inputs": []})
    assert_error(response, 422, "validation_error")
    response = client.post("/v1/models/mdl_nope/predict", json={})
    assert_error(response, 422, "validation_error")


def test_database_down_answers_503(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from app.main import create_app
    from tests.conftest import reset_caches

    # Nothing listens on port 9: every connection is refused, as when PostgreSQL is down.
    monkeypatch.setenv("TUNESERVE_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:9/x")
    monkeypatch.setenv("TUNESERVE_DATA_DIR", str(tmp_path))
    reset_caches()
    try:
        client = TestClient(create_app())  # no lifespan: migrations would fail first
        # The key check is the first thing that needs the database.
        response = client.get("/v1/jobs", headers={"Authorization": "Bearer tsk_" + "0" * 48})
        assert_error(response, 503, "database_unavailable")
        assert response.headers["retry-after"] == "5"
    finally:
        reset_caches()


def test_many_concurrent_requests_do_not_starve_the_thread_pool(
    configured: Path, database_url: str
) -> None:
    """More requests in flight than worker threads and pooled connections: each must still be
    answered promptly (a request holding a connection while waiting for a thread once
    deadlocked the pool until its 30 s timeout)."""
    import asyncio
    import time

    import httpx

    from app.main import create_app

    key = issue_test_key(database_url)
    app = create_app()

    async def scenario() -> tuple[list[int], float]:
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as client:
            started = time.monotonic()
            responses = await asyncio.wait_for(
                asyncio.gather(
                    *(client.get("/v1/jobs" if i % 2 else "/v1/files") for i in range(120))
                ),
                timeout=25,
            )
            return [r.status_code for r in responses], time.monotonic() - started

    statuses, _elapsed = asyncio.run(scenario())
    assert statuses == [200] * 120
