"""Upload limits on the real API process: a file is checked as it streams by, and refused at
the first row, line or column over a limit, with nothing left behind (issue 13, defect 2)."""

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.files.parsing import read_table
from app.files.storage import file_path
from tests.support.service import Service

pytestmark = pytest.mark.e2e

MAX_ROWS = 1000
MAX_LINE_CHARS = 4096
MAX_COLUMNS = 8


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`tuneserve api` alone, on SQLite, with small upload limits."""
    work = tmp_path_factory.mktemp("upload-limits")
    env = {
        "TUNESERVE_DATA_DIR": str(work / "data"),
        "TUNESERVE_DATABASE_URL": f"sqlite:///{work / 'tuneserve.db'}",
        "TUNESERVE_BROKER_URL": f"sqla+sqlite:///{work / 'broker.db'}",
        "TUNESERVE_MAX_UPLOAD_ROWS": str(MAX_ROWS),
        "TUNESERVE_MAX_UPLOAD_LINE_CHARS": str(MAX_LINE_CHARS),
        "TUNESERVE_MAX_UPLOAD_COLUMNS": str(MAX_COLUMNS),
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


def post(service: Service, name: str, content: bytes) -> httpx.Response:
    with service.client() as client:
        return client.post("/v1/files", files={"file": (name, content)})


def assert_refused(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return str(error["message"])


def upload_temp_files(service: Service) -> list[str]:
    return sorted(p.name for p in service.settings().uploads_dir.glob(".upload-*"))


def open_temp_files(service: Service) -> list[str]:
    """Files the API process holds open in the uploads folder, or deleted (a spooled body)."""
    pid = service.processes["api"].pid
    uploads = str(service.settings().uploads_dir)
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith(uploads) or target.endswith("(deleted)"):
            targets.append(target)
    return sorted(targets)


def stored_files(service: Service) -> list[str]:
    with service.client() as client:
        return [f["id"] for f in client.get("/v1/files").json()["data"]]


def snapshot(service: Service) -> tuple[list[str], list[str]]:
    return open_temp_files(service), stored_files(service)


def assert_nothing_left(service: Service, before: tuple[list[str], list[str]]) -> None:
    open_before, files_before = before
    assert upload_temp_files(service) == []
    # The request's spooled body is closed just after the answer is sent.
    deadline = time.monotonic() + 10
    while open_temp_files(service) != open_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_temp_files(service) == open_before
    assert stored_files(service) == files_before
    with service.client() as client:
        assert client.get("/healthz").status_code == 200


def test_many_tiny_rows_are_refused_at_the_row_limit(service: Service) -> None:
    before = snapshot(service)
    # 2 MB of 4-byte rows (500 times the limit), and invalid UTF-8 at the very end: read to
    # the end, the file would be refused for that instead (as it was).
    content = b"t\n" + b"abc\n" * 500_000 + b"\xff\n"
    message = assert_refused(post(service, "tiny.csv", content), 413, "too_many_rows")
    assert f"more than {MAX_ROWS} rows" in message and "tiny.csv" in message
    assert_nothing_left(service, before)


def test_over_long_jsonl_line_is_refused(service: Service) -> None:
    before = snapshot(service)
    good = b'{"text": "fine", "label": "1"}\n'
    long_line = b'{"text": "' + b"x" * (2 * MAX_LINE_CHARS) + b'", "label": "0"}\n'
    message = assert_refused(
        post(service, "long.jsonl", good * 3 + long_line + good), 413, "line_too_long"
    )
    assert f"Line 4 is longer than {MAX_LINE_CHARS} characters" in message
    assert_nothing_left(service, before)


@pytest.mark.parametrize(
    ("name", "content", "code", "words"),
    [
        (
            "long.tsv",
            b"a\tb\n1\t2\n" + b"y" * (2 * MAX_LINE_CHARS) + b"\t3\n",
            "line_too_long",
            "Line 3",
        ),
        # An unbalanced quote makes one field of the rest of the file, line after line.
        ("quote.csv", b'a,b\n"open,1\n' + b"z,2\n" * MAX_LINE_CHARS, "line_too_long", '"'),
        (
            "wide.csv",
            ",".join(f"c{i}" for i in range(20)).encode() + b"\n" + b"1," * 19 + b"1\n",
            "too_many_columns",
            "20 columns",
        ),
        (
            "wide.jsonl",
            b"".join(b'{"k%d": 1}\n' % i for i in range(20)),
            "too_many_columns",
            "Line 9",
        ),
    ],
)
def test_lines_records_and_columns_over_the_limits(
    service: Service, name: str, content: bytes, code: str, words: str
) -> None:
    before = snapshot(service)
    assert words in assert_refused(post(service, name, content), 413, code)
    assert_nothing_left(service, before)


def test_files_at_the_limits_are_stored_and_read_back_the_same(service: Service) -> None:
    long_text = "w" * (MAX_LINE_CHARS - 6)  # its line, quotes and \r\n included, is the limit
    rows = [f'"text {i}, quoted",{i % 2}\n' for i in range(MAX_ROWS - 1)]
    content = ("\ufefftext,label\n" + "".join(rows) + f'"{long_text}",1\r\n').encode()
    before = snapshot(service)
    assert_refused(post(service, "over.csv", content + b"x,1\n"), 413, "too_many_rows")
    assert_nothing_left(service, before)

    response = post(service, "edge.csv", content)
    assert response.status_code == 201, response.text
    record: dict[str, Any] = response.json()
    assert (record["row_count"], record["columns"]) == (MAX_ROWS, ["text", "label"])
    stored = file_path(service.settings(), record["id"], "csv")
    assert stored.read_bytes() == content
    frame = read_table(stored, "csv")  # as the worker reads it
    assert (len(frame), list(frame.columns)) == (MAX_ROWS, ["text", "label"])
    assert frame.loc[998, "text"] == "text 998, quoted"
    assert frame.loc[MAX_ROWS - 1, "text"] == long_text
    assert upload_temp_files(service) == []
