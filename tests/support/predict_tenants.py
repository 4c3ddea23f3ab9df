"""Tenants with a served model, and raw HTTP/1.1 predict clients (polite and hostile).

Used by tests/e2e/test_predict_flood.py and bench/hostile_tenant.py. The clients speak HTTP
over raw asyncio streams (as bench/http_load.py does), so many of them cost the machine little
and a client can hang up at any moment.
"""

import asyncio
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.auth.repository import TenantRepository
from app.core.db import build_engine
from app.tables import JobStatus
from tests.support.auth import issue_test_key
from tests.support.rows import job_row, model_row
from tests.support.specs import tiny_spec


def register_model(
    database_url: str, models_dir: Path, tenant: str, folder: Path, text_pair: bool = False
) -> tuple[str, str]:
    """A key of `tenant` and a trained-model row of it whose folder is a copy of `folder`, as
    the worker would leave them; returns (model id, key)."""
    key = issue_test_key(database_url, tenant)
    engine = build_engine(database_url)
    try:
        with Session(engine) as session:
            owner = TenantRepository(session).get_by_name(tenant)
            assert owner is not None
            job = job_row(owner.id, JobStatus.succeeded, epochs=1.0)
            job.spec = tiny_spec("file_train", "file_validation")  # readable by GET /v1/jobs
            session.add(job)
            session.flush()
            model = model_row(owner.id, job.id, text_pair=text_pair)
            session.add(model)
            model_id = model.id
            shutil.copytree(folder, models_dir / model_id)
            session.commit()
    finally:
        engine.dispose()
    return model_id, key


def encode_request(
    method: str, port: int, path: str, key: str | None, body: dict[str, Any] | None = None
) -> bytes:
    """One complete HTTP/1.1 keep-alive request."""
    payload = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    return (head + "\r\n").encode() + payload


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    """One whole response (Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", ""):
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            body += (await reader.readexactly(size + 2))[:-2]
            if size == 0:
                break
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(int(lines[0][9:12]), headers, body)


class Connection:
    """One keep-alive connection; requests one after another."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> Answer:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(request)
        return await read_answer(self.reader)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def hang_up(port: int, request: bytes, after_seconds: float) -> None:
    """Send a request and close the connection `after_seconds` later, never reading."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        await asyncio.sleep(after_seconds)
    finally:
        writer.close()


def long_inputs(count: int, chars: int, salt: int = 0) -> list[str]:
    """`count` different texts of about `chars` characters in the tiny model's words."""
    words = ["good", "movie", "bad", "plot", "the", "actors", "great", "story", "was", "not"]
    texts = []
    for i in range(count):
        text, j = [], i + salt
        length = 0
        while length < chars:
            word = words[(j * 7 + length) % len(words)]
            text.append(word)
            length += len(word) + 1
            j += 1
        texts.append(" ".join(text))
    return texts


def metric_samples(text: str) -> dict[str, float]:
    """Prometheus text exposition as {"name{labels}": value}."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples
