"""End to end: real API and worker processes train a tiny model, in both run modes."""

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.service import Service
from tests.support.specs import tiny_spec
from tests.support.sse import parse_sse
from tests.support.tiny_model import sentiment_rows

pytestmark = pytest.mark.e2e

FAST_LEASES = {
    "TUNESERVE_HEARTBEAT_SECONDS": "0.5",
    "TUNESERVE_LEASE_SECONDS": "10",
    "TUNESERVE_REAPER_INTERVAL_SECONDS": "2",
    "HF_HUB_OFFLINE": "1",
}


@pytest.fixture(params=["embedded", "postgres+redis"])
def service(
    request: pytest.FixtureRequest, tmp_path: Path, tiny_model_dir: Path
) -> Iterator[Service]:
    env = {
        **FAST_LEASES,
        "TUNESERVE_DATA_DIR": str(tmp_path / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(tiny_model_dir.parent),
        "TUNESERVE_QUEUE_NAME": f"e2e-{tmp_path.name}-{uuid.uuid4().hex[:8]}",
    }
    embedded = request.param == "embedded"
    if not embedded:
        env["TUNESERVE_DATABASE_URL"] = request.getfixturevalue("postgres_url")
        env["TUNESERVE_BROKER_URL"] = request.getfixturevalue("redis_url")
    service = Service(env, tmp_path, embedded=embedded)
    try:
        yield service.start()
    finally:
        service.stop()


def spec(train: str, dev: str, **changes: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "hyperparameters": {"num_train_epochs": 3, "learning_rate": 5e-3, "seed": 1},
        "metrics": ["accuracy", "f1", "precision", "recall", "matthews_correlation"],
    }
    return tiny_spec(train, dev, **{**defaults, **changes})


def test_train_poll_metrics_predict(service: Service) -> None:
    train, dev = service.upload(sentiment_rows(240)), service.upload(sentiment_rows(60, seed=1))
    job = service.create_job(spec(train, dev))
    assert job["status"] == "queued"

    done = service.wait_for(job["id"])
    assert done["status"] == "succeeded", service.logs()
    assert done["attempts"] == 1
    assert done["started_at"] and done["finished_at"]
    assert done["progress"]["epoch"] == 3
    assert done["progress"]["step"] == done["progress"]["total_steps"] == 90

    rows = service.metrics(job["id"])
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert [row["step"] for row in rows] == [30, 60, 90]
    for row in rows:
        assert row["train_loss"] > 0 and row["eval_loss"] > 0
        assert set(row["metrics"]) == {
            "accuracy",
            "f1",
            "precision",
            "recall",
            "matthews_correlation",
        }

    model_id = done["model_id"]
    with service.client() as client:
        model = client.get(f"/v1/models/{model_id}").json()
        assert model["labels"] == ["neg", "pos"]
        assert model["metrics"]["accuracy"] == rows[-1]["metrics"]["accuracy"]
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == [model_id]
        answer = client.post(
            f"/v1/models/{model_id}/predict",
            json={"inputs": ["the movie was great", {"text": "awful plot"}]},
        )
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert len(predictions) == 2
        for prediction in predictions:
            assert prediction["label"] in ("neg", "pos")
            assert sum(prediction["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        pair = client.post(
            f"/v1/models/{model_id}/predict", json={"inputs": [{"text": "a", "text_pair": "b"}]}
        )
        assert pair.status_code == 422
        assert pair.json()["error"]["code"] == "text_pair_not_supported"


def test_bad_labels_fail_readably_then_cancel_a_running_job(service: Service) -> None:
    rows, dev_rows = sentiment_rows(240), sentiment_rows(60, seed=1)
    for index, row in enumerate(rows + dev_rows):
        row["id"] = str(index)
    train, dev = service.upload(rows), service.upload(dev_rows)

    bad = service.create_job(spec(train, dev, label_column="id"))
    failed = service.wait_for(bad["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "invalid_labels"
    assert "distinct values" in failed["error"]["message"]
    assert "Traceback" not in failed["error"]["message"]

    missing = service.create_job(spec(train, dev, base_model="nobody/no-such-model-xyz"))
    failed = service.wait_for(missing["id"])
    assert failed["error"]["code"] == "base_model_unavailable"

    long = service.create_job(
        spec(train, dev, hyperparameters={"num_train_epochs": 50, "learning_rate": 1e-3})
    )
    service.wait_for(long["id"], ("running",))
    with service.client() as client:
        response = client.post(f"/v1/jobs/{long['id']}/cancel")
        assert response.status_code == 200
        assert response.json()["cancel_requested"] is True
        cancelled = service.wait_for(long["id"], timeout=60)
        assert cancelled["status"] == "cancelled"
        assert cancelled["model_id"] is None
        assert len(service.metrics(long["id"])) < 100
        again = client.post(f"/v1/jobs/{long['id']}/cancel")
        assert again.status_code == 409
    # The worker is free again: the next job runs to the end.
    after = service.create_job(spec(train, dev, hyperparameters={"num_train_epochs": 1}))
    assert service.wait_for(after["id"])["status"] == "succeeded"
    with service.client() as client:
        assert len(client.get("/v1/models").json()["data"]) == 1


def test_event_stream_follows_training_and_replays(service: Service) -> None:
    train, dev = service.upload(sentiment_rows(240)), service.upload(sentiment_rows(60, seed=1))
    hyperparameters = {"num_train_epochs": 2, "learning_rate": 5e-3, "seed": 1}
    job = service.create_job(spec(train, dev, hyperparameters=hyperparameters))
    url = f"/v1/jobs/{job['id']}/events/stream"
    live: list[dict[str, Any]] = []
    status_when_started = None
    with service.client() as client, client.stream("GET", url) as response:
        assert response.status_code == 200
        for event in parse_sse(response.iter_lines()):
            live.append(event)
            if event["event"] == "started":
                status_when_started = service.job(job["id"])["status"]
    # Written by the worker process, read by the API process, while the job ran.
    assert status_when_started == "running"
    assert [int(e["id"]) for e in live] == list(range(1, len(live) + 1))
    types = [e["event"] for e in live]
    assert types[:2] == ["queued", "started"] and types[-1] == "succeeded"
    # A checkpoint after epoch 1; none after the last epoch, whose model is saved instead.
    assert types.count("epoch_finished") == 2 and types.count("checkpoint_saved") == 1
    losses = [e["data"]["data"] for e in live if e["event"] == "train_loss"]
    assert len(losses) >= 60 // 10 and all(loss["loss"] > 0 for loss in losses)
    assert [loss["step"] for loss in losses] == sorted(loss["step"] for loss in losses)
    epochs = [e["data"]["data"] for e in live if e["event"] == "epoch_finished"]
    assert [row["epoch"] for row in epochs] == [1, 2]
    assert [row["metrics"] for row in epochs] == [
        row["metrics"] for row in service.metrics(job["id"])
    ]

    middle = len(live) // 2
    with service.client() as client:
        with client.stream("GET", url, headers={"Last-Event-ID": str(middle)}) as response:
            replay = list(parse_sse(response.iter_lines()))
        assert replay == live[middle:]
        listed = client.get(f"/v1/jobs/{job['id']}/events", params={"limit": 1000}).json()
    assert [e["seq"] for e in listed["data"]] == [int(e["id"]) for e in live]
