"""POST /v1/files with header=false, in-process on SQLite and on PostgreSQL."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import SHARED_DATA
from tests.support.auth import issue_test_key

COLA_DEV = SHARED_DATA / "glue/CoLA/dev.tsv"


@pytest.fixture
def client(configured: Path, database_url: str) -> Iterator[TestClient]:
    from app.main import create_app

    key = issue_test_key(database_url)
    with TestClient(create_app(), headers={"Authorization": f"Bearer {key}"}) as test_client:
        yield test_client


def upload(
    client: TestClient, name: str, content: bytes, data: dict[str, str], query: str = ""
) -> Any:
    return client.post(f"/v1/files{query}", files={"file": (name, content)}, data=data)


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


@pytest.mark.skipif(not COLA_DEV.is_file(), reason="../shared/data is absent")
def test_cola_dev_headerless(client: TestClient) -> None:
    content = COLA_DEV.read_bytes()
    response = upload(client, "dev.tsv", content, {"header": "false"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["columns"] == ["column_1", "column_2", "column_3", "column_4"]
    assert (body["row_count"], body["header"]) == (1043, False)
    assert client.get(f"/v1/files/{body['id']}").json()["header"] is False

    names = '["source", "label", "mark", "sentence"]'
    named = upload(client, "dev.tsv", content, {}, f"?header=false&column_names={names}")
    assert named.status_code == 201, named.text
    assert named.json()["columns"] == ["source", "label", "mark", "sentence"]

    # as it was before: the first line names the columns
    default = upload(client, "dev.tsv", content, {})
    assert (default.json()["row_count"], default.json()["header"]) == (1042, True)


def test_comma_separated_names_and_refusals(client: TestClient) -> None:
    csv = b"good movie,pos\nbad film,neg\n"
    named = upload(client, "a.csv", csv, {"header": "false", "column_names": "sentence, label"})
    assert named.status_code == 201, named.text
    assert (named.json()["columns"], named.json()["row_count"]) == (["sentence", "label"], 2)

    refusals = [
        ({"header": "false", "column_names": "a,b,c"}, "", "column_names_mismatch"),
        ({"header": "false", "column_names": '["a"]'}, "", "column_names_mismatch"),
        ({"column_names": "a,b"}, "", "column_names_need_no_header"),
        ({"header": "false", "column_names": "a,a"}, "", "invalid_column_names"),
        ({"header": "false", "column_names": "a,"}, "", "invalid_column_names"),
        ({"header": "false", "column_names": '["a", 1]'}, "", "invalid_column_names"),
        ({"header": "false"}, "?header=true", "conflicting_parameters"),
    ]
    for data, query, code in refusals:
        assert_error(upload(client, "a.csv", csv, data, query), 422, code)
    jsonl = b'{"sentence": "good", "label": "pos"}\n'
    assert_error(upload(client, "a.jsonl", jsonl, {}, "?header=false"), 422, "header_not_supported")
    assert_error(upload(client, "a.csv", csv, {"header": "maybe"}), 422, "validation_error")
    assert [f["columns"] for f in client.get("/v1/files").json()["data"]] == [["sentence", "label"]]
