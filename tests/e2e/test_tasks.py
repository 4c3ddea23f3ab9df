"""End to end, in both run modes: regression and multi-label jobs (the task inferred from the
data and recorded), their metrics, and predict's answers; label names on a classifier."""

import json
import random
from typing import Any

import pytest

from tests.e2e.test_model_lifecycle import service as service  # noqa: F401  (the fixture)
from tests.support.service import Service
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows

pytestmark = pytest.mark.e2e
HYPERPARAMETERS = {"num_train_epochs": 2, "learning_rate": 5e-3, "seed": 1, "precision": "fp32"}


def scored_rows(count: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [
        {
            "sentence": row["sentence"],
            "score": f"{(4.0 if row['label'] == 'pos' else 1.0) + rng.random():.2f}",
        }
        for row in sentiment_rows(count, seed)
    ]


def tagged_rows(count: int, seed: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i, row in enumerate(sentiment_rows(count, seed)):
        tags = [row["label"]] + (["long"] if i % 3 == 0 else [])
        rows.append({"sentence": row["sentence"], "tags": tags if i % 7 else []})
    return rows


def run_batch(service: Service, model_id: str, file_id: str) -> dict[str, Any]:
    from tests.e2e.test_batch_predictions import wait_batch

    with service.client() as client:
        created = client.post(f"/v1/models/{model_id}/batch-predictions", json={"file_id": file_id})
        assert created.status_code == 201, created.text
    batch = wait_batch(service, created.json()["id"])
    assert batch["status"] == "succeeded", service.logs()
    return batch


def read_output(service: Service, batch: dict[str, Any], fmt: str) -> list[dict[str, Any]]:
    with service.client() as client:
        content = client.get(f"/v1/files/{batch['output_file_id']}/content")
        assert content.status_code == 200, content.text
    return [json.loads(line) for line in content.text.splitlines() if line.strip()]


def train(service: Service, spec: dict[str, Any]) -> dict[str, Any]:
    job = service.wait_for(service.create_job(spec)["id"])
    assert job["status"] == "succeeded", service.logs()
    return job


def test_regression_is_inferred_and_predicts_scores(service: Service) -> None:  # noqa: F811
    spec = tiny_spec(
        service.upload(scored_rows(160, 0)),
        service.upload(scored_rows(40, 1)),
        label_column="score",
        hyperparameters=HYPERPARAMETERS,
    )
    job = train(service, spec)
    assert job["data"]["task"] == "regression" and job["data"]["task_inferred"] is True
    rows = service.metrics(job["id"])
    # The tiny random model predicts one value for every input, where correlations are
    # undefined (and left out); tests/e2e/test_tasks_real_data.py shows Pearson on STS-B.
    assert {"mse", "mae"} <= set(rows[-1]["metrics"]) <= {"pearson", "spearmanr", "mse", "mae"}
    with service.client() as client:
        answer = client.post(
            f"/v1/models/{job['model_id']}/predict", json={"inputs": ["very good movie"]}
        ).json()
    prediction = answer["predictions"][0]
    assert isinstance(prediction["score"], float)
    assert prediction["scores"] == {"score": prediction["score"]}

    batch = run_batch(service, job["model_id"], service.upload(scored_rows(20, 3)))
    assert {"mse", "mae"} <= set(batch["result"]["metrics"])
    assert batch["result"]["evaluated_rows"] == 20
    output = read_output(service, batch, "jsonl")
    assert set(output[0]) == {"sentence", "score", "predicted_score"}
    assert isinstance(float(output[0]["predicted_score"]), float)


def test_multi_label_from_json_arrays(service: Service) -> None:  # noqa: F811
    train_id = service.upload(tagged_rows(160, 0), "train.jsonl")
    dev_id = service.upload(tagged_rows(40, 1), "dev.jsonl")
    spec = tiny_spec(
        train_id, dev_id, label_column="tags", hyperparameters=HYPERPARAMETERS, threshold=0.4
    )
    job = train(service, spec)
    assert job["data"]["task"] == "multi_label_classification"
    assert job["data"]["labels"] == ["long", "neg", "pos"]
    metrics = service.metrics(job["id"])[-1]["metrics"]
    assert {"f1_micro", "f1_macro", "subset_accuracy", "f1/pos"} <= set(metrics)
    with service.client() as client:
        model = client.get(f"/v1/models/{job['model_id']}").json()
        answer = client.post(
            f"/v1/models/{model['id']}/predict", json={"inputs": ["the plot was great"]}
        ).json()
    prediction = answer["predictions"][0]
    assert set(prediction["scores"]) == {"long", "neg", "pos"}
    assert prediction["labels"] == [
        label
        for label, p in sorted(prediction["scores"].items(), key=lambda kv: -kv[1])
        if p >= 0.4
    ]

    batch = run_batch(service, model["id"], service.upload(tagged_rows(21, 3), "eval.jsonl"))
    assert {"f1_micro", "f1_macro", "subset_accuracy"} <= set(batch["result"]["metrics"])
    assert batch["result"]["evaluated_rows"] == 21
    assert set(batch["result"]["per_label"]) == {"long", "neg", "pos"}
    output = read_output(service, batch, "jsonl")
    assert all(isinstance(row["predicted_labels"], str) for row in output)


def test_label_names_name_predictions(service: Service) -> None:  # noqa: F811
    rows = [
        {"sentence": r["sentence"], "label": "1" if r["label"] == "pos" else "0"}
        for r in sentiment_rows(120)
    ]
    train_id = service.upload(rows)
    spec = tiny_spec(
        train_id,
        train_id,
        hyperparameters={**HYPERPARAMETERS, "num_train_epochs": 1},
        label_names={"0": "negative", "1": "positive"},
    )
    job = train(service, spec)
    with service.client() as client:
        model = client.get(f"/v1/models/{job['model_id']}").json()
        answer = client.post(f"/v1/models/{model['id']}/predict", json={"inputs": ["good"]}).json()
    assert model["labels"] == ["negative", "positive"]
    assert set(answer["predictions"][0]["scores"]) == {"negative", "positive"}
