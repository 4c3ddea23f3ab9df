"""The client commands' parts without a server: SSE parsing, tables, reconnects, keys."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.client.credentials import MissingApiKey, resolve_api_key, resolve_url
from app.client.http import ApiClient, ApiErrorResponse, ClientError, ConnectionFailed
from app.client.render import metrics_line, metrics_table, table
from app.client.spec import build_spec, load_label_names
from app.client.sse import SseMessage, parse_sse
from app.client.stream import follow_events
from app.client.watch import watch_job
from app.core.config import Settings
from app.jobs.schemas import MetricRow

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_sse_parser_joins_data_and_skips_comments() -> None:
    lines = [
        ": ping",
        "id: 1",
        "event: queued",
        'data: {"seq": 1}',
        "",
        "",  # a second blank line dispatches nothing
        "id:2",
        "event: epoch_finished",
        "data: first",
        "data:second",
        "retry: 100",
        "",
        "data: no blank line after it, so never dispatched",
    ]
    assert list(parse_sse(lines)) == [
        SseMessage(id="1", event="queued", data='{"seq": 1}'),
        SseMessage(id="2", event="epoch_finished", data="first\nsecond"),
    ]


def test_sse_parser_defaults_and_line_endings() -> None:
    messages = list(parse_sse(["data: x\r\n", "\r\n", "event: only\n", "\n"]))
    assert messages == [SseMessage(id=None, event="message", data="x")]


def row(epoch: int, train_loss: float | None, metrics: dict[str, float]) -> MetricRow:
    return MetricRow(
        epoch=epoch,
        step=30 * epoch,
        train_loss=train_loss,
        eval_loss=0.5 / epoch,
        metrics=metrics,
        elapsed_seconds=12.25 * epoch,
        created_at=NOW,
    )


def test_metrics_table_has_a_column_per_metric_and_aligns_numbers() -> None:
    rows = [row(1, None, {"accuracy": 0.75}), row(10, 0.123456, {"accuracy": 0.8, "f1": 0.9})]
    assert metrics_table(rows).splitlines() == [
        "epoch  step  train_loss  eval_loss  accuracy      f1  elapsed",
        "    1    30           -     0.5000    0.7500       -    12.2s",
        "   10   300      0.1235     0.0500    0.8000  0.9000   122.5s",
    ]


def test_table_keeps_text_left_aligned() -> None:
    assert table(["id", "n"], [["job_a", "7"], ["job_bb", "12"]]).splitlines() == [
        "id       n",
        "job_a    7",
        "job_bb  12",
    ]


def test_metrics_line() -> None:
    line = metrics_line(2, 60, 0.61, None, {"accuracy": 0.8, "f1": 0.75}, 7.45, total_epochs=3)
    assert line == (
        "epoch 2/3  step 60  train_loss 0.6100  eval_loss -  accuracy 0.8000  f1 0.7500  (7.5 s)"
    )


def test_build_spec_leaves_defaults_to_the_server() -> None:
    spec = build_spec(
        "tiny", "f1", "f2", "sentence", "label", learning_rate=5e-3, metrics="f1, accuracy"
    )
    assert spec == {
        "base_model": "tiny",
        "dataset": {"source": "files", "train_file_id": "f1", "validation_file_id": "f2"},
        "text_column": "sentence",
        "label_column": "label",
        "hyperparameters": {"learning_rate": 5e-3},
        "metrics": ["f1", "accuracy"],
    }


def test_key_and_url_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    monkeypatch.delenv("TUNESERVE_API_KEY", raising=False)
    monkeypatch.delenv("TUNESERVE_URL", raising=False)
    with pytest.raises(MissingApiKey):
        resolve_api_key(settings, None)
    (tmp_path / "first-api-key").write_text("from-file\n")
    assert resolve_api_key(settings, None) == "from-file"
    monkeypatch.setenv("TUNESERVE_API_KEY", "from-env")
    assert resolve_api_key(settings, None) == "from-env"
    assert resolve_api_key(settings, "given") == "given"
    assert resolve_url(None) == "http://127.0.0.1:8000"
    monkeypatch.setenv("TUNESERVE_URL", "http://env:1/")
    assert resolve_url(None) == "http://env:1"
    assert resolve_url("http://given:2") == "http://given:2"


# --- against a fake server -----------------------------------------------------------------


def sse(seq: int, type: str, **data: Any) -> bytes:
    body = {"seq": seq, "type": type, "data": data, "created_at": NOW.isoformat()}
    return f"id: {seq}\nevent: {type}\ndata: {json.dumps(body)}\n\n".encode()


class DroppedStream(httpx.SyncByteStream):
    """Sends some events, then the connection breaks."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        raise httpx.ReadError("connection reset by peer")


EVENTS = [
    sse(1, "queued"),
    sse(2, "started", attempt=1, worker="w1"),
    sse(3, "train_loss", step=2, epoch=0.5, loss=0.7, learning_rate=0.01),
    sse(4, "train_loss", step=4, epoch=1.0, loss=0.6, learning_rate=0.01),
    sse(
        5,
        "epoch_finished",
        epoch=1,
        step=4,
        train_loss=0.65,
        eval_loss=0.6,
        metrics={"accuracy": 0.7},
        elapsed_seconds=1.0,
    ),  # fmt: skip
    sse(6, "checkpoint_saved", step=4, epoch=1.0),
    sse(7, "train_loss", step=6, epoch=1.5, loss=0.5, learning_rate=0.01),
    sse(
        8,
        "epoch_finished",
        epoch=2,
        step=8,
        train_loss=0.55,
        eval_loss=0.5,
        metrics={"accuracy": 0.9},
        elapsed_seconds=2.0,
    ),  # fmt: skip
    sse(9, "succeeded", model_id="mdl_1"),
]


def job_json(total_steps: int | None) -> dict[str, Any]:
    return {
        "id": "job_1",
        "status": "running",
        "spec": {
            "base_model": "tiny",
            "dataset": {"source": "files", "train_file_id": "a", "validation_file_id": "b"},
            "text_column": "sentence",
            "label_column": "label",
        },
        "created_at": NOW.isoformat(),
        "started_at": None,
        "finished_at": None,
        "progress": {"epoch": 0, "total_epochs": 2, "step": 0, "total_steps": total_steps},
        "attempts": 1,
        "cancel_requested": False,
        "error": None,
        "model_id": None,
    }


class FakeServer:
    """The stream drops after event `drop_after` once; the job knows its steps when asked
    a second time."""

    def __init__(self, drop_after: int) -> None:
        self.drop_after = drop_after
        self.stream_requests: list[str | None] = []
        self.job_requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer k"
        if request.url.path == "/v1/jobs/job_1":
            self.job_requests += 1
            return httpx.Response(200, json=job_json(8 if self.job_requests > 1 else None))
        if request.url.path == "/v1/jobs/job_1/events/stream":
            after = request.headers.get("Last-Event-ID")
            self.stream_requests.append(after)
            rest = EVENTS[int(after or 0) :]
            if after is None:
                return httpx.Response(200, stream=DroppedStream(rest[: self.drop_after]))
            return httpx.Response(200, content=b": ping\n\n" + b"".join(rest))
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})


def test_follow_events_reconnects_with_last_event_id() -> None:
    server = FakeServer(drop_after=3)
    reconnects: list[int] = []
    with ApiClient("http://test", "k", transport=httpx.MockTransport(server)) as api:
        events = list(
            follow_events(
                api,
                "job_1",
                on_reconnect=lambda seq, _: reconnects.append(seq),
                sleep=lambda _: None,
            )
        )
    assert [event.seq for event in events] == list(range(1, 10))
    assert events[-1].type == "succeeded" and events[-1].data == {"model_id": "mdl_1"}
    assert server.stream_requests == [None, "3"]
    assert reconnects == [3]


def test_follow_events_stops_on_a_client_error() -> None:
    api = ApiClient("http://test", "k", transport=httpx.MockTransport(FakeServer(0)))
    with api, pytest.raises(ApiErrorResponse, match="not_found: no") as caught:
        list(follow_events(api, "job_2", sleep=lambda _: None))
    assert caught.value.status_code == 404


def test_unreachable_server_is_a_connection_failure() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    api = ApiClient("http://test", "k", transport=httpx.MockTransport(refuse))
    with api, pytest.raises(ConnectionFailed, match="cannot reach tuneserve at http://test"):
        api.list_models()


def test_an_error_without_the_common_shape_shows_the_body() -> None:
    def proxy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad   Gateway</html>")

    api = ApiClient("http://test", "k", transport=httpx.MockTransport(proxy))
    with api, pytest.raises(ApiErrorResponse, match="http_502: <html>Bad Gateway</html>"):
        api.get_job("job_1")


def test_watch_prints_a_line_per_epoch_and_the_outcome(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("app.client.stream.time.sleep", lambda _: None)
    server = FakeServer(drop_after=6)
    with ApiClient("http://test", "k", transport=httpx.MockTransport(server)) as api:
        assert watch_job(api, "job_1") == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "epoch 1/2  step 4  train_loss 0.6500  eval_loss 0.6000  accuracy 0.7000  (1.0 s)",
        "epoch 2/2  step 8  train_loss 0.5500  eval_loss 0.5000  accuracy 0.9000  (2.0 s)",
        "job job_1 succeeded: model mdl_1",
    ]
    assert "epoch 1/2" in err and "4/4" in err and "epoch 2/2" in err
    assert "reconnecting after event 6" in err
    assert server.stream_requests == [None, "6"]


def test_build_spec_carries_the_task_options() -> None:
    spec = build_spec(
        "tiny",
        "f1",
        None,
        "text",
        "labels",
        task="multi_label_classification",
        label_delimiter=",",
        threshold=0.3,
        label_names={"0": "admiration"},
        class_weights="balanced",
        metric_for_best_model="f1_micro",
    )
    assert spec["dataset"] == {"source": "files", "train_file_id": "f1"}
    assert spec["task"] == "multi_label_classification" and spec["label_delimiter"] == ","
    assert spec["threshold"] == 0.3 and spec["label_names"] == {"0": "admiration"}
    assert spec["hyperparameters"] == {
        "class_weights": "balanced",
        "metric_for_best_model": "f1_micro",
    }


def test_label_names_from_a_list_file_or_json(tmp_path: Path) -> None:
    listing = tmp_path / "emotions.txt"
    listing.write_text("admiration\namusement\nneutral")  # GoEmotions: no final newline
    assert load_label_names(listing) == {"0": "admiration", "1": "amusement", "2": "neutral"}
    mapping = tmp_path / "names.json"
    mapping.write_text('{"0": "not_equivalent", "1": "equivalent"}')
    assert load_label_names(mapping) == {"0": "not_equivalent", "1": "equivalent"}
    mapping.write_text('{"0": 1}')
    with pytest.raises(ClientError, match="must map"):
        load_label_names(mapping)


def test_headerless_upload_sends_header_false_and_the_names(tmp_path: Path) -> None:
    seen: list[bytes] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request.read())
        return httpx.Response(
            201,
            json={
                "id": "file_1",
                "filename": "cola.tsv",
                "format": "tsv",
                "size_bytes": 4,
                "row_count": 1,
                "columns": ["source", "label"],
                "header": False,
                "created_at": "2026-11-25T00:00:00Z",
            },
        )

    path = tmp_path / "cola.tsv"
    path.write_text("gj04\t1\n")
    api = ApiClient("http://test", "k", transport=httpx.MockTransport(server))
    with api:
        api.upload_file(path, None, header=False, column_names="source,label")
    assert b'name="header"\r\n\r\nfalse' in seen[0]
    assert b'name="column_names"\r\n\r\nsource,label' in seen[0]


def test_predictions_read_per_task() -> None:
    from app.client.render import prediction
    from app.models.schemas import Prediction

    multi = Prediction(
        label="joy", scores={"joy": 0.9, "anger": 0.1, "love": 0.6}, labels=["joy", "love"]
    )
    lines = [line.split(None, 1) for line in prediction(multi).splitlines()]
    assert lines[:3] == [["labels", "joy, love"], ["joy", "0.9000"], ["love", "0.6000"]]
    none = Prediction(label="joy", scores={"joy": 0.2}, labels=[])
    assert "(none over the threshold)" in prediction(none)
    score = Prediction(label="score", scores={"score": 3.25}, score=3.25)
    assert prediction(score) == "score  3.2500"
    single = Prediction(label="pos", scores={"pos": 0.7, "neg": 0.3})
    assert prediction(single).splitlines()[0].split() == ["label", "pos"]
