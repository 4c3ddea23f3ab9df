"""Event streams on the real API process: more streams than request sessions leave the rest of
the API answering, each tenant has a cap (429 `too_many_streams`), a revoked key's streams end,
and a stream past its maximum duration ends and is resumed by the client with Last-Event-ID."""

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.repository import ApiKeyRepository
from app.auth.service import hash_secret
from app.client.http import ApiClient
from app.client.stream import follow_events
from app.core.db import build_engine
from app.core.deps import REQUEST_SESSIONS
from app.tables import ApiKey
from tests.support.service import Service
from tests.support.specs import tiny_spec
from tests.support.sse import parse_sse
from tests.support.tiny_model import sentiment_rows

pytestmark = pytest.mark.e2e

STREAMS = REQUEST_SESSIONS + 10
TIMEOUT = 60  # generous: these tests assert that answers come, not how fast


def start_api(tmp_path: Path, tiny_model_dir: Path, **env: str) -> Service:
    """The API alone: with no worker, a job stays queued and its stream stays open."""
    base = {
        "TUNESERVE_DATA_DIR": str(tmp_path / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(tiny_model_dir.parent),
        "TUNESERVE_QUEUE_NAME": f"flood-{tmp_path.name}-{uuid.uuid4().hex[:8]}",
        "HF_HUB_OFFLINE": "1",
    }
    service = Service({**base, **env}, tmp_path, embedded=False)
    service.api_key = service.issue_key()
    service.start_process("api", "api", "--port", str(service.port))
    service.wait_healthy()
    return service


@pytest.fixture
def flood_api(tmp_path: Path, tiny_model_dir: Path) -> Iterator[Service]:
    service = start_api(
        tmp_path,
        tiny_model_dir,
        TUNESERVE_MAX_STREAMS_PER_TENANT=str(STREAMS),
        TUNESERVE_STREAM_KEY_CHECK_SECONDS="0.5",
    )
    try:
        yield service
    finally:
        service.stop()


def queued_job(service: Service) -> str:
    file_id = service.upload(sentiment_rows(10))
    return str(service.create_job(tiny_spec(file_id, file_id))["id"])


class OpenStream(threading.Thread):
    """One `curl -N …/events/stream`: open, read until the server ends it."""

    def __init__(self, service: Service, job_id: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{service.url}/v1/jobs/{job_id}/events/stream"
        self.key = key
        self.opened = threading.Event()
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        try:
            with httpx.stream("GET", self.url, headers=headers, timeout=TIMEOUT * 3) as answer:
                assert answer.status_code == 200, answer.read()
                for event in parse_sse(answer.iter_lines()):
                    self.events.append(event)
                    self.opened.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def status_of_stream(client: httpx.Client, job_id: str) -> int:
    """The status of a new stream, which is closed at once (an open one never ends)."""
    with client.stream("GET", f"/v1/jobs/{job_id}/events/stream", timeout=TIMEOUT) as answer:
        return answer.status_code


def revoke(service: Service, secret: str) -> None:
    engine = build_engine(service.settings().sqlalchemy_url)
    try:
        with Session(engine) as session:
            key_id = session.scalar(
                select(ApiKey.id).where(ApiKey.secret_sha256 == hash_secret(secret))
            )
            assert key_id is not None and ApiKeyRepository(session).revoke(key_id)
            session.commit()
    finally:
        engine.dispose()


def test_many_streams_leave_the_api_answering_then_end_when_the_key_is_revoked(
    flood_api: Service,
) -> None:
    service = flood_api
    job_id = queued_job(service)
    other_key = service.issue_key("other")

    streams = [OpenStream(service, job_id, service.api_key) for _ in range(STREAMS - 1)]
    held = contextlib.ExitStack()  # the last stream, which the client will close
    held_client = held.enter_context(service.client())
    url = f"/v1/jobs/{job_id}/events/stream"
    answer = held.enter_context(held_client.stream("GET", url, timeout=TIMEOUT))
    assert answer.status_code == 200
    held_events = parse_sse(answer.iter_lines())  # kept: a dropped iterator closes the stream
    assert next(held_events)["event"] == "queued"
    for stream in streams:
        stream.start()
    for stream in streams:
        assert stream.opened.wait(TIMEOUT), f"a stream did not open: {stream.error}"
    assert all(s.events[0]["event"] == "queued" for s in streams)

    # More streams than request sessions are open: the rest of the API still answers.
    assert httpx.get(f"{service.url}/healthz", timeout=TIMEOUT).status_code == 200
    with service.client(other_key) as other:
        listed = other.get("/v1/jobs", timeout=TIMEOUT)
        assert listed.status_code == 200 and listed.json()["data"] == []
        # Another tenant's streams are not capped by this one's, and see no foreign job.
        assert other.get(f"/v1/jobs/{job_id}/events/stream").status_code == 404
    with service.client() as owner:
        assert owner.get(f"/v1/jobs/{job_id}", timeout=TIMEOUT).json()["status"] == "queued"
        # The tenant's cap: one stream more is refused, as a plain error answer.
        assert status_of_stream(owner, job_id) == 429
        refused = owner.get(f"/v1/jobs/{job_id}/events/stream", timeout=TIMEOUT)
        assert refused.json()["error"]["code"] == "too_many_streams"
        assert int(refused.headers["Retry-After"]) > 0
        # A stream the client closes gives its slot back.
        held.close()
        deadline = time.monotonic() + TIMEOUT
        while status_of_stream(owner, job_id) != 200:
            assert time.monotonic() < deadline, "a closed stream still counts against the cap"
            time.sleep(0.2)

    # Revoking the key ends every stream it opened, without the job ending.
    revoke(service, service.api_key)
    for stream in streams:
        stream.join(TIMEOUT)
        assert not stream.is_alive(), "a stream of the revoked key is still open"
        assert stream.error is None and [e["event"] for e in stream.events] == ["queued"]
    # Reconnecting is refused once the key cache (TUNESERVE_AUTH_CACHE_SECONDS) lets it go;
    # until then a stream it opens is ended by the next key check.
    deadline = time.monotonic() + TIMEOUT
    with service.client() as owner:
        while status_of_stream(owner, job_id) != 401:
            assert time.monotonic() < deadline, "the revoked key still opens streams"
            time.sleep(0.2)

    # The tenant's slots were given back: a new key of it streams again.
    with (
        service.client(service.issue_key("tests")) as owner,
        owner.stream("GET", f"/v1/jobs/{job_id}/events/stream", timeout=TIMEOUT) as answer,
    ):
        assert answer.status_code == 200
        assert next(parse_sse(answer.iter_lines()))["event"] == "queued"


def test_a_stream_ends_at_its_maximum_duration_and_the_client_resumes(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    service = start_api(tmp_path, tiny_model_dir, TUNESERVE_STREAM_MAX_SECONDS="1")
    try:
        job_id = queued_job(service)
        with service.client() as client:
            url = f"/v1/jobs/{job_id}/events/stream"
            with client.stream("GET", url, timeout=TIMEOUT) as answer:
                raw = list(parse_sse(answer.iter_lines()))  # ends by itself
            assert [(e["id"], e["event"]) for e in raw] == [("1", "queued")]

        reconnects: list[int] = []
        seen: list[tuple[int, str]] = []

        def follow() -> None:
            with ApiClient(service.url, service.api_key) as api:
                for event in follow_events(
                    api, job_id, on_reconnect=lambda s, _: reconnects.append(s)
                ):
                    seen.append((event.seq, event.type))

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        deadline = time.monotonic() + TIMEOUT
        while len(reconnects) < 2:  # it has been cut off (and came back) twice
            assert follower.is_alive() and time.monotonic() < deadline
            time.sleep(0.2)
        with service.client() as client:
            assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        follower.join(TIMEOUT)
        assert not follower.is_alive()
        assert seen == [(1, "queued"), (2, "cancelled")]  # nothing lost, nothing repeated
        assert set(reconnects) == {1}
    finally:
        service.stop()
