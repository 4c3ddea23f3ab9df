"""Receiving uploads on the real API process (issue 13): a file over the row limit is refused
while its body is still coming, the server answers other requests meanwhile, and at most
TUNESERVE_MAX_CONCURRENT_UPLOADS uploads are received at once."""

import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.support.service import Service

pytestmark = pytest.mark.e2e

MAX_ROWS = 1000
BOUNDARY = "receiving-test-boundary"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`tuneserve api` alone, on SQLite: one upload at a time, a short wait for a slot."""
    work = tmp_path_factory.mktemp("upload-receiving")
    env = {
        "TUNESERVE_DATA_DIR": str(work / "data"),
        "TUNESERVE_DATABASE_URL": f"sqlite:///{work / 'tuneserve.db'}",
        "TUNESERVE_BROKER_URL": f"sqla+sqlite:///{work / 'broker.db'}",
        "TUNESERVE_MAX_UPLOAD_ROWS": str(MAX_ROWS),
        "TUNESERVE_MAX_CONCURRENT_UPLOADS": "1",
        "TUNESERVE_UPLOAD_SLOT_WAIT_SECONDS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    service = Service(env, work, embedded=False)
    migrated = service.cli("migrate")
    assert migrated.returncode == 0, migrated.stderr
    service.api_key = service.issue_key()
    try:
        service.start_process("api", "api", "--port", str(service.port))
        service.wait_healthy()
        yield service
    finally:
        service.stop()


class PartialUpload:
    """A multipart upload of a CSV file declared `declared` bytes long, of which only what
    `send` is given goes out: the server sees a body that is still coming."""

    def __init__(self, service: Service, declared: int) -> None:
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            'filename="big.csv"\r\nContent-Type: text/csv\r\n\r\ntext,label\n'
        ).encode()
        self.tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        self.remaining = declared
        length = len(head) + declared + len(self.tail)
        self.sock = socket.create_connection(("127.0.0.1", service.port), timeout=30)
        self.sock.sendall(
            (
                f"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {service.api_key}\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                f"Content-Length: {length}\r\n\r\n"
            ).encode()
            + head
        )

    def send(self, data: bytes) -> None:
        assert len(data) <= self.remaining
        self.sock.sendall(data)
        self.remaining -= len(data)

    def finish(self) -> None:
        line = b"x" * 61 + b",1\n"  # 64 bytes: a few rows, within the row limit
        self.send(line * (self.remaining // 64) + b"\n" * (self.remaining % 64))
        self.sock.sendall(self.tail)

    def answer(self) -> tuple[int, bytes]:
        """The status and the whole answer (read until the body's end is in)."""
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return int(data[9:12]), data

    def close(self) -> None:
        self.sock.close()


def test_rows_over_the_limit_are_refused_before_the_rest_of_the_body(service: Service) -> None:
    # 100 MiB declared, a little over the row limit sent: the answer comes without the rest
    # (before, the whole body was read first: this waited for bytes that never come).
    upload = PartialUpload(service, 100 * 1024 * 1024)
    try:
        upload.send(b"a,0\n" * (MAX_ROWS + 10))
        status, answer = upload.answer()
        assert status == 413, answer
        assert b'"too_many_rows"' in answer
    finally:
        upload.close()
    with service.client() as client:
        assert client.get("/healthz").status_code == 200


def test_uploads_beyond_the_slots_wait_then_get_429(service: Service) -> None:
    stalled = PartialUpload(service, 32 * 1024)
    try:
        stalled.send(b"a,0\n" * 10)  # holds the one slot, its body still coming
        with service.client() as client:
            # The server answers other requests meanwhile...
            assert client.get("/healthz").status_code == 200
            assert client.get("/v1/files").status_code == 200
            # ...and a second upload waits for the slot (1 s here), then is refused.
            refused = client.post("/v1/files", files={"file": ("b.csv", b"a,b\n1,2\n")})
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "too_many_uploads"
            assert refused.headers["Retry-After"] == "5"
        stalled.finish()
        status, answer = stalled.answer()
        assert status == 201, answer
    finally:
        stalled.close()
    with httpx.Client(
        base_url=service.url, headers={"Authorization": f"Bearer {service.api_key}"}
    ) as client:
        stored = client.post("/v1/files", files={"file": ("c.csv", b"a,b\n1,2\n")})
        assert stored.status_code == 201, stored.text
