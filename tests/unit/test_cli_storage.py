"""The client's download, delete, checkpoints and usage commands against a fake server."""

import argparse
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from app.client import commands
from app.client.http import ApiClient, ApiErrorResponse, ClientError
from app.client.render import size

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).isoformat()
ARCHIVE = b"\x1f\x8b" + b"z" * 3000


def server(request: httpx.Request) -> httpx.Response:
    path, method = request.url.path, request.method
    if method == "GET" and path == "/v1/models/mdl_1/archive":
        return httpx.Response(200, content=ARCHIVE, headers={"content-type": "application/gzip"})
    if method == "GET" and path == "/v1/files/file_1":
        return httpx.Response(
            200,
            json={
                "id": "file_1",
                "filename": "../../etc/train.csv",
                "format": "csv",
                "size_bytes": 4,
                "row_count": 1,
                "columns": ["a"],
                "header": True,
                "created_at": NOW,
            },
        )
    if method == "GET" and path == "/v1/files/file_1/content":
        return httpx.Response(200, content=b"a\n1\n")
    if method == "DELETE" and path in ("/v1/files/file_1", "/v1/models/mdl_1", "/v1/jobs/job_1"):
        return httpx.Response(204)
    if method == "DELETE" and path == "/v1/files/file_busy":
        error = {"code": "file_in_use", "message": "Job 'job_9' reads file 'file_busy'."}
        return httpx.Response(409, json={"error": error})
    if method == "GET" and path == "/v1/jobs/job_1/checkpoints":
        row = {
            "step": 10,
            "size_bytes": 2_500_000,
            "eval_loss": 0.5,
            "metrics": {"accuracy": 0.75},
            "created_at": NOW,
        }
        return httpx.Response(
            200,
            json={
                "data": [
                    {**row, "epoch": 1, "is_best": False, "model_id": None},
                    {**row, "epoch": 2, "is_best": True, "model_id": "mdl_1"},
                ]
            },
        )
    if method == "GET" and path == "/v1/usage":
        counts = {"files": 4, "models": 2048, "checkpoints": 5 * 1024**2, "outputs": 0}
        return httpx.Response(
            200,
            json={"bytes": counts, "total_bytes": sum(counts.values()), "limit_bytes": None},
        )
    return httpx.Response(404, json={"error": {"code": "not_found", "message": path}})


@pytest.fixture
def api() -> ApiClient:
    return ApiClient("http://test", "k", transport=httpx.MockTransport(server))


def args(**values: object) -> argparse.Namespace:
    return argparse.Namespace(**{"json": False, "output": None, "force": False, **values})


def test_models_download_streams_into_a_file(
    api: ApiClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert commands.models_download(api, args(model_id="mdl_1", output=str(tmp_path))) == 0
    saved = tmp_path / "mdl_1.tar.gz"
    assert saved.read_bytes() == ARCHIVE
    assert [p.name for p in tmp_path.iterdir()] == ["mdl_1.tar.gz"]  # no temp file left
    assert f"{saved}  2.9 KiB" in capsys.readouterr().out
    # An existing file is kept unless --force.
    with pytest.raises(ClientError, match="exists; pass --force"):
        commands.models_download(api, args(model_id="mdl_1", output=str(saved)))
    assert commands.models_download(api, args(model_id="mdl_1", output=str(saved), force=True)) == 0


def test_a_failed_download_leaves_no_file(api: ApiClient, tmp_path: Path) -> None:
    target = tmp_path / "x.tar.gz"
    with pytest.raises(ApiErrorResponse, match="not_found"):
        commands.models_download(api, args(model_id="mdl_gone", output=str(target)))
    assert list(tmp_path.iterdir()) == []


def test_files_download_uses_the_base_name_only(
    api: ApiClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert commands.files_download(api, args(file_id="file_1")) == 0
    assert (tmp_path / "train.csv").read_bytes() == b"a\n1\n"


def test_deletes_print_and_conflicts_are_errors(
    api: ApiClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert commands.files_delete(api, args(file_id="file_1")) == 0
    assert commands.models_delete(api, args(model_id="mdl_1")) == 0
    assert commands.jobs_delete(api, args(job_id="job_1")) == 0
    assert capsys.readouterr().out.splitlines() == [
        "file_1  deleted",
        "mdl_1  deleted",
        "job_1  deleted",
    ]
    with pytest.raises(ApiErrorResponse, match="file_in_use: Job 'job_9'") as caught:
        commands.files_delete(api, args(file_id="file_busy"))
    assert caught.value.status_code == 409


def test_checkpoints_and_usage_tables(api: ApiClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert commands.jobs_checkpoints(api, args(job_id="job_1")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [
        "epoch  step  size     eval_loss  metrics          model",
        "1        10  2.4 MiB     0.5000  accuracy 0.7500  -",
        "2 *      10  2.4 MiB     0.5000  accuracy 0.7500  mdl_1",
    ]
    assert commands.usage(api, args()) == 0
    assert capsys.readouterr().out.splitlines() == [
        "kind         size       bytes",
        "files        4 B            4",
        "models       2.0 KiB     2048",
        "checkpoints  5.0 MiB  5242880",
        "outputs      0 B            0",
        "total        5.0 MiB  5244932",
        "limit        none           -",
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 * 1024**3, "5.0 GiB"), (None, "-")],
)
def test_sizes(value: int | None, text: str) -> None:
    assert size(value) == text
