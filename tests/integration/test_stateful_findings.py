"""What the stateful Schemathesis run (tests/fuzz/test_api_stateful.py) found, in-process on
SQLite and PostgreSQL: each answer is the documented one, never a 500."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.auth.repository import TenantRepository
from app.core.db import session_scope
from app.main import create_app
from app.tables import JobStatus
from tests.support.auth import issue_test_key
from tests.support.rows import job_row, model_row
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows


@pytest.fixture
def app(configured: Path) -> Iterator[Any]:
    application = create_app()
    with TestClient(application):  # runs the lifespan once
        yield application


@pytest.fixture
def client(app: Any, database_url: str) -> TestClient:
    key = issue_test_key(database_url)
    return TestClient(app, headers={"Authorization": f"Bearer {key}"})


def assert_documented(
    app: Any, path: str, method: str, answer: Any, **path_parameters: str
) -> None:
    """The answer's status, content type and body are the ones the OpenAPI document gives."""
    operation = schemathesis.openapi.from_dict(app.openapi())[path][method]
    operation.Case(path_parameters=path_parameters).validate_response(
        answer,
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
    )


def succeeded_job() -> str:
    with session_scope() as session:
        owner = TenantRepository(session).get_by_name("tests")
        assert owner is not None
        job = job_row(owner.id, JobStatus.succeeded, epochs=1.0)
        job.spec = tiny_spec("file_train", "file_validation")
        session.add(job)
        return job.id


@pytest.mark.parametrize("epoch", [2**31, 2**63, 10**30, 0, -1])
def test_an_epoch_no_database_can_hold_is_refused(client: TestClient, epoch: int) -> None:
    # Found: 2**63 reached the checkpoint lookup, and SQLite raised OverflowError (a 500).
    job_id = succeeded_job()
    answer = client.post(f"/v1/jobs/{job_id}/checkpoints/{epoch}/model")
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "validation_error"


def test_an_epoch_in_range_without_a_checkpoint_is_not_found(client: TestClient) -> None:
    job_id = succeeded_job()
    for epoch in (1, 2**31 - 1):
        answer = client.post(f"/v1/jobs/{job_id}/checkpoints/{epoch}/model")
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "checkpoint_not_found"


def test_an_idempotent_replay_answers_a_documented_200(app: Any, client: TestClient) -> None:
    # Found: the replay's 200 was not in the document (only 201 was).
    rows = "".join(json.dumps(row) + "\n" for row in sentiment_rows(10))
    uploaded = client.post("/v1/files", files={"file": ("d.jsonl", rows)})
    assert uploaded.status_code == 201, uploaded.text
    spec = tiny_spec(uploaded.json()["id"], uploaded.json()["id"])
    headers = {"Idempotency-Key": "retry-1"}
    first = client.post("/v1/jobs", json=spec, headers=headers)
    again = client.post("/v1/jobs", json=spec, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.json()["id"] == first.json()["id"]
    assert_documented(app, "/v1/jobs", "POST", first)
    assert_documented(app, "/v1/jobs", "POST", again)


def test_registering_an_epoch_again_answers_a_documented_200(app: Any, client: TestClient) -> None:
    # The same kind of answer as the replay above: 200 with the model registered before.
    job_id = succeeded_job()
    with session_scope() as session:
        owner = TenantRepository(session).get_by_name("tests")
        assert owner is not None
        model = model_row(owner.id, job_id)
        model.epoch = 1
        session.add(model)
        model_id = model.id
    again = client.post(f"/v1/jobs/{job_id}/checkpoints/1/model")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == model_id
    path = "/v1/jobs/{job_id}/checkpoints/{epoch}/model"
    assert_documented(app, path, "POST", again, job_id=job_id, epoch="1")
