"""Every way an upload can fail leaves nothing behind: no temp file, no stored file, no row
(in-process, on SQLite and PostgreSQL; the real-process tests are in tests/e2e)."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from app.core.config import get_settings
from app.files import storage
from app.files.repository import FileRepository
from app.main import create_app
from tests.support.auth import issue_test_key


@pytest.fixture
def client(configured: Path, database_url: str) -> Iterator[TestClient]:
    key = issue_test_key(database_url, tenant="alice")
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(), headers=headers, raise_server_exceptions=False) as client:
        yield client


def uploads() -> list[str]:
    folder = get_settings().uploads_dir
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def post(client: TestClient, name: str, content: bytes, **data: str) -> Any:
    return client.post("/v1/files", files={"file": (name, content)}, data=data)


def assert_left_nothing(client: TestClient, response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert uploads() == []
    assert client.get("/v1/files").json()["data"] == []


def test_refused_uploads_leave_nothing(client: TestClient) -> None:
    settings = get_settings()
    settings.max_upload_rows, settings.max_upload_bytes = 3, 5000
    settings.max_upload_line_chars, settings.max_upload_columns = 100, 3
    cases: list[tuple[str, bytes, int, str]] = [
        ("a.parquet", b"PAR1", 415, "unsupported_file_format"),
        ("empty.csv", b"", 400, "invalid_file"),
        ("ragged.csv", b"a,b\n1\n", 400, "invalid_file"),
        ("big.csv", b"a\n" + b"x\n" * 3000, 413, "file_too_large"),
        ("rows.csv", b"a\n" + b"x\n" * 4, 413, "too_many_rows"),
        ("line.jsonl", b'{"a": "' + b"x" * 100 + b'"}\n', 413, "line_too_long"),
        ("wide.tsv", b"a\tb\tc\td\n1\t2\t3\t4\n", 413, "too_many_columns"),
    ]
    for name, content, status, code in cases:
        assert_left_nothing(client, post(client, name, content), status, code)


def test_a_failed_insert_stores_no_file(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def database_down(*_: object) -> None:
        raise OperationalError("INSERT", {}, Exception("connection lost"))

    monkeypatch.setattr(FileRepository, "add", database_down)
    response = post(client, "a.csv", b"a,b\n1,2\n")
    monkeypatch.undo()
    assert_left_nothing(client, response, 503, "database_unavailable")


def test_a_failed_save_leaves_no_row_and_no_temp_file(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.os, "replace", disk_full)
    response = post(client, "a.csv", b"a,b\n1,2\n")
    monkeypatch.undo()
    assert_left_nothing(client, response, 500, "internal_error")


def test_a_stored_file_is_the_upload_byte_for_byte(client: TestClient) -> None:
    content = b'\xef\xbb\xbftext\tlabel\r\nsays "hi\tthere\r\n\r\nok\t1\n'
    response = post(client, "a.dat", content, format="tsv")
    assert response.status_code == 201, response.text
    record = response.json()
    assert (record["row_count"], record["columns"]) == (2, ["text", "label"])
    assert uploads() == [f"{record['id']}.tsv"]
    stored = storage.file_path(get_settings(), record["id"], "tsv")
    assert stored.read_bytes() == content


def test_the_request_session_is_taken_only_after_the_check(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Request sessions are few (REQUEST_SESSIONS); a large file's check must not hold one.
    from app.core import deps
    from app.files import service

    events: list[str] = []
    make_session, scan, scan_upload = deps.get_sessionmaker, service.scan_table, service.scan_upload

    def sessionmaker() -> Any:
        events.append("session")
        return make_session()

    def scan_table(*args: Any) -> Any:
        events.append("check")
        return scan(*args)

    def check_as_it_arrives(*args: Any) -> Any:
        events.append("check")
        return scan_upload(*args)

    monkeypatch.setattr(deps, "get_sessionmaker", sessionmaker)
    monkeypatch.setattr(service, "scan_table", scan_table)
    monkeypatch.setattr(service, "scan_upload", check_as_it_arrives)
    assert post(client, "a.csv", b"a,b\n1,2\n").status_code == 201
    assert events == ["check", "session"]
