"""End to end: tenant A floods predict on the real API process and hangs up; tenant B is served.

Tenant A sends 256-input requests of long texts from several keep-alive connections and from
many clients that hang up before their answer; tenant B sends one-input requests one after
another meanwhile. B gets every answer; A's surplus is refused 429 with Retry-After; the inputs
of A's clients that hung up are not all run (the server's own counters say so).
"""

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.predict_tenants import (
    Answer,
    Connection,
    encode_request,
    hang_up,
    long_inputs,
    metric_samples,
    register_model,
)
from tests.support.service import Service

pytestmark = pytest.mark.e2e

ROUTE = 'route="/v1/models/{model_id}/predict"'


@pytest.fixture
def api(tmp_path: Path, tiny_model_dir: Path) -> Iterator[Service]:
    env = {
        "TUNESERVE_DATA_DIR": str(tmp_path / "data"),
        "TUNESERVE_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        "TUNESERVE_BASE_MODELS_DIR": str(tiny_model_dir.parent),
        "TUNESERVE_QUEUE_NAME": f"flood-{tmp_path.name}-{uuid.uuid4().hex[:8]}",
        "TUNESERVE_PREDICT_PRECISION": "fp32",
        "TUNESERVE_PREDICT_MAX_QUEUED_INPUTS_PER_MODEL": "512",  # two of A's requests
        "HF_HUB_OFFLINE": "1",
    }
    service = Service(env, tmp_path, embedded=False, issue_key=False)
    service.start_process("api", "api", "--port", str(service.port))
    try:
        service.wait_healthy()
        yield service
    finally:
        service.stop()


def predict_counts(service: Service) -> tuple[dict[str, float], float]:
    """Predict answers by status, and inputs run in forward passes, from GET /metrics."""
    samples = metric_samples(httpx.get(f"{service.url}/metrics", timeout=10).text)
    statuses = {}
    for name, value in samples.items():
        if name.startswith("tuneserve_http_requests_total{") and ROUTE in name:
            statuses[name.split('status="')[1].split('"')[0]] = value
    return statuses, samples.get("tuneserve_predict_batch_size_sum", 0.0)


def test_a_flooding_tenant_that_hangs_up_does_not_hurt_another(
    api: Service, tiny_model_dir: Path
) -> None:
    settings = api.settings()
    model_a, key_a = register_model(
        settings.sqlalchemy_url, settings.models_dir, "a", tiny_model_dir
    )
    model_b, key_b = register_model(
        settings.sqlalchemy_url, settings.models_dir, "b", tiny_model_dir
    )
    port = api.port
    flood = [
        encode_request(
            "POST",
            port,
            f"/v1/models/{model_a}/predict",
            key_a,
            {"inputs": long_inputs(256, 2000, salt=i)},
        )
        for i in range(4)
    ]
    lone = encode_request(
        "POST", port, f"/v1/models/{model_b}/predict", key_b, {"inputs": ["good"]}
    )
    seconds, hang_ups = 4.0, 40

    async def scenario() -> tuple[list[Answer], list[Answer]]:
        stop_at = time.monotonic() + seconds
        a_answers: list[Answer] = []
        b_answers: list[Answer] = []

        async def flooder(index: int) -> None:
            connection = Connection(port)
            try:
                while time.monotonic() < stop_at:
                    a_answers.append(await connection.send(flood[index % len(flood)]))
            finally:
                connection.close()

        async def hang_ups_in_turn() -> None:
            for i in range(hang_ups):
                await hang_up(port, flood[i % len(flood)], after_seconds=0.3)
                await asyncio.sleep(seconds / hang_ups / 4)

        async def tenant_b() -> None:
            await asyncio.sleep(0.5)  # once A's flood is under way
            connection = Connection(port)
            try:
                while time.monotonic() < stop_at:
                    b_answers.append(await asyncio.wait_for(connection.send(lone), 30))
            finally:
                connection.close()

        await asyncio.gather(
            *(flooder(i) for i in range(4)),
            *(hang_ups_in_turn() for _ in range(4)),
            tenant_b(),
        )
        return a_answers, b_answers

    a_answers, b_answers = asyncio.run(scenario())

    # B: every request answered, each with its one prediction.
    assert b_answers
    for answer in b_answers:
        assert answer.status == 200, answer.body[:300]
        assert len(answer.json()["predictions"]) == 1
    # A: served or refused with Retry-After, nothing else.
    assert {a.status for a in a_answers} <= {200, 429}, {a.status for a in a_answers}
    refused = [a for a in a_answers if a.status == 429]
    assert refused, "A's flood never filled its model's queue"
    assert refused[0].headers["retry-after"] == "1"
    assert json.loads(refused[0].body)["error"]["code"] == "predict_overloaded"

    # The server's side, once every request has been answered: the clients that hung up were
    # noticed (499), and not all of their inputs ran.
    sent = len(a_answers) + len(b_answers) + 4 * hang_ups
    deadline = time.monotonic() + 30
    statuses, inputs_run = predict_counts(api)
    while sum(statuses.values()) < sent and time.monotonic() < deadline:
        time.sleep(0.2)
        statuses, inputs_run = predict_counts(api)
    assert sum(statuses.values()) == sent, statuses
    # 400: a client that hung up before its body was read whole (the server's loop was busy).
    assert set(statuses) <= {"200", "400", "429", "499"}, statuses
    assert statuses.get("499", 0) > 0
    answered_a = statuses["200"] - len(b_answers)
    assert inputs_run < 256 * (answered_a + statuses["499"]) + len(b_answers)
    assert httpx.get(f"{api.url}/healthz", timeout=10).status_code == 200
