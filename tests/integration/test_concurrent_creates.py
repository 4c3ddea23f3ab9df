"""Concurrent job creation on a real API process, on SQLite and on PostgreSQL: one Idempotency-Key
makes exactly one job (one 201, the rest 200, never a 5xx), and the queued-jobs limit is exact."""

import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api_process import api_process
from tests.support.service import Service
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows

CONCURRENCY = 16
ROUNDS = 10
LIMIT = 4


@pytest.fixture
def api(tmp_path: Path, database_url: str, tiny_model_dir: Path) -> Iterator[Service]:
    limit = {"TUNESERVE_MAX_QUEUED_JOBS_PER_TENANT": str(LIMIT)}
    with api_process(tmp_path, database_url, tiny_model_dir, **limit) as service:
        yield service


def fresh_tenant(service: Service, name: str) -> tuple[str, dict[str, Any]]:
    """A key of a new tenant (each round starts with no queued job), and a spec of its files."""
    key = service.issue_key(name)
    ids = []
    for rows in (sentiment_rows(20), sentiment_rows(6, seed=1)):
        content = "".join(json.dumps(row) + "\n" for row in rows).encode()
        with service.client(key) as client:
            response = client.post("/v1/files", files={"file": ("d.jsonl", content)})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return key, tiny_spec(*ids)


def post_all(service: Service, key: str, bodies: list[tuple[dict[str, Any], str]]) -> list[Any]:
    """POST every (spec, Idempotency-Key) at once, each from its own thread and connection."""

    def post(body: tuple[dict[str, Any], str]) -> httpx.Response:
        with service.client(key) as client:
            return client.post("/v1/jobs", json=body[0], headers={"Idempotency-Key": body[1]})

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


def test_one_idempotency_key_makes_one_job(api: Service) -> None:
    for round_ in range(ROUNDS):
        key, spec = fresh_tenant(api, f"idempotency-{round_}")
        responses = post_all(api, key, [(spec, "same-key")] * CONCURRENCY)
        codes = Counter(r.status_code for r in responses)
        assert codes == {201: 1, 200: CONCURRENCY - 1}, [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1
        with api.client(key) as client:
            assert len(client.get("/v1/jobs").json()["data"]) == 1


def test_queued_jobs_limit_is_exact_under_concurrency(api: Service) -> None:
    for round_ in range(3):
        key, spec = fresh_tenant(api, f"limit-{round_}")
        responses = post_all(api, key, [(spec, f"job-{i}") for i in range(2 * LIMIT)])
        codes = Counter(r.status_code for r in responses)
        assert codes == {201: LIMIT, 429: LIMIT}, [r.text for r in responses]
        refused = [r.json() for r in responses if r.status_code == 429]
        assert {body["error"]["code"] for body in refused} == {"too_many_queued_jobs"}
        with api.client(key) as client:
            assert len(client.get("/v1/jobs").json()["data"]) == LIMIT
