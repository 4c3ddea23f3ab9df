"""End to end, in both run modes: a worker labels a whole file with a trained model; the output
and the evaluation equal what the predict endpoint gives for the same rows."""

import csv
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from tests.e2e.test_model_lifecycle import service as service  # noqa: F401  (the fixture)
from tests.support.service import TERMINAL, Service
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows

pytestmark = pytest.mark.e2e


def wait_batch(service: Service, batch_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with service.client() as client:
        while time.monotonic() < deadline:
            batch = client.get(f"/v1/batch-predictions/{batch_id}").json()
            if batch["status"] in TERMINAL:
                return dict(batch)
            time.sleep(0.3)
    raise AssertionError(f"batch {batch_id} did not end\n{service.logs()}")


@pytest.fixture
def model(service: Service) -> Iterator[dict[str, Any]]:  # noqa: F811
    train = service.upload(sentiment_rows(120))
    spec = tiny_spec(train, service.upload(sentiment_rows(30, seed=1)))
    spec["hyperparameters"] = {"num_train_epochs": 1, "learning_rate": 5e-3, "seed": 1}
    job = service.wait_for(service.create_job(spec)["id"])
    assert job["status"] == "succeeded", service.logs()
    with service.client() as client:
        yield dict(client.get(f"/v1/models/{job['model_id']}").json())


def test_batch_prediction_equals_predict_and_evaluates(
    service: Service,  # noqa: F811
    model: dict[str, Any],
) -> None:
    rows = sentiment_rows(70, seed=5)
    rows[3]["sentence"] = 'a "quoted", comma'  # CSV quoting survives the round trip
    content = "sentence,label\n" + "".join(
        f'"{r["sentence"].replace(chr(34), chr(34) * 2)}",{r["label"]}\n' for r in rows
    )
    file_id = service.upload_bytes("eval.csv", content.encode())
    with service.client() as client:
        created = client.post(
            f"/v1/models/{model['id']}/batch-predictions", json={"file_id": file_id}
        )
        assert created.status_code == 201, created.text
        assert created.json()["id"].startswith("bpj_")
        assert created.json()["spec"]["label_column"] == "label"  # from the training spec
        batch = wait_batch(service, created.json()["id"])
        assert batch["status"] == "succeeded", service.logs()
        assert batch["progress"] == {"rows": 70, "total_rows": 70}

        sync = client.post(
            f"/v1/models/{model['id']}/predict",
            json={"inputs": [r["sentence"] for r in rows], "precision": "fp32"},
        ).json()["predictions"]
        listed = client.get("/v1/batch-predictions").json()["data"]
        assert [b["id"] for b in listed] == [batch["id"]]
        of_model = client.get(f"/v1/batch-predictions?model_id={model['id']}").json()["data"]
        assert [b["id"] for b in of_model] == [batch["id"]]
        assert client.get("/v1/batch-predictions?model_id=mdl_other").json()["data"] == []
        assert batch["id"] not in [j["id"] for j in client.get("/v1/jobs").json()["data"]]
        events = client.get(f"/v1/batch-predictions/{batch['id']}/events").json()["data"]
        assert [e["type"] for e in events] == ["queued", "started", "succeeded"]

    settings = service.settings()
    output = settings.uploads_dir / f"{batch['output_file_id']}.csv"
    produced = list(csv.DictReader(io.StringIO(output.read_text())))
    labels = model["labels"]
    assert list(produced[0]) == ["sentence", "label", "predicted_label"] + [
        f"score_{label}" for label in labels
    ]
    assert [r["sentence"] for r in produced] == [r["sentence"] for r in rows]
    for out, expected in zip(produced, sync, strict=True):
        assert out["predicted_label"] == expected["label"]
        for label in labels:
            assert float(out[f"score_{label}"]) == pytest.approx(
                expected["scores"][label], abs=1e-6
            )

    truth = [r["label"] for r in rows]
    guesses = [p["label"] for p in sync]
    result = batch["result"]
    assert result["evaluated_rows"] == 70 and result["rows_with_unknown_labels"] == 0
    assert result["metrics"]["accuracy"] == pytest.approx(accuracy_score(truth, guesses))
    positive = labels[1]
    assert result["metrics"]["f1"] == pytest.approx(f1_score(truth, guesses, pos_label=positive))
    assert result["confusion_matrix"] == {
        "labels": labels,
        "matrix": confusion_matrix(truth, guesses, labels=labels).tolist(),
    }
    assert sum(v["support"] for v in result["per_label"].values()) == 70


def test_batch_prediction_errors_and_cancel(
    service: Service,  # noqa: F811
    model: dict[str, Any],
) -> None:
    unlabelled = service.upload([{"text": "good movie"}, {"text": "bad plot"}], "x.jsonl")
    with service.client() as client:
        url = f"/v1/models/{model['id']}/batch-predictions"
        missing = client.post(url, json={"file_id": unlabelled})
        assert missing.status_code == 422
        assert missing.json()["error"]["code"] == "unknown_column"
        other = client.post(url, json={"file_id": "file_nope"})
        assert other.json()["error"]["code"] == "unknown_file"
        nobody = client.post("/v1/models/mdl_nope/batch-predictions", json={"file_id": unlabelled})
        assert nobody.status_code == 404
        created = client.post(url, json={"file_id": unlabelled, "text_column": "text"})
        assert created.status_code == 201
        batch = wait_batch(service, created.json()["id"])
        assert batch["status"] == "succeeded"
        # no labels: no evaluation
        assert batch["result"] == {
            "rows": 2,
            "precision": "fp32",
            "task": "single_label_classification",
        }
        output = service.settings().uploads_dir / f"{batch['output_file_id']}.jsonl"
        lines = [json.loads(line) for line in output.read_text().splitlines()]
        assert [line["text"] for line in lines] == ["good movie", "bad plot"]
        ended = client.post(f"/v1/batch-predictions/{batch['id']}/cancel")
        assert ended.status_code == 409
        assert client.get("/v1/batch-predictions/job_nope").json()["error"]["code"] == (
            "batch_prediction_not_found"
        )

    # The CLI: create, watch to the end, show.
    auth = ("--url", service.url, "--api-key", service.api_key)
    created_cli = service.cli(
        "batch-predictions", "create", model["id"], unlabelled, "--text-column", "text", *auth
    )
    assert created_cli.returncode == 0, created_cli.stderr
    batch_id = created_cli.stdout.split()[0]
    watched = service.cli("batch-predictions", "watch", batch_id, *auth)
    assert watched.returncode == 0, watched.stderr
    assert "succeeded" in watched.stdout and "2 / 2 rows" in watched.stdout
    shown = service.cli("batch-predictions", "show", batch_id, *auth)
    assert "output file" in shown.stdout
