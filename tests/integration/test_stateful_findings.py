"""What the stateful Schemathesis run (tests/fuzz/test_api_stateful.py) found, in-process on
SQLite and PostgreSQL: each answer is the documented one, never a 500."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.auth.repository import TenantRepository
from app.core.db import session_scope
from app.main import create_app
from app.tables import JobStatus
from tests.support.auth import issue_test_key
from tests.support.rows import job_row
from tests.support.specs import tiny_spec


@pytest.fixture
def app(configured: Path) -> Iterator[Any]:
    application = create_app()
    with TestClient(application):  # runs the lifespan once
        yield application


@pytest.fixture
def client(app: Any, database_url: str) -> TestClient:
    key = issue_test_key(database_url)
    return TestClient(app, headers={"Authorization": f"Bearer {key}"})


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
