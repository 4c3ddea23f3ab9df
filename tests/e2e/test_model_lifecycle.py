"""End to end, in both run modes: the best epoch becomes the model, early stopping, a
held-out validation split, class weights, and kept checkpoints registered as models."""

import pytest

from tests.e2e.test_service_tiny_model import service as service  # noqa: F401  (both modes)
from tests.support.service import Service
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows

pytestmark = pytest.mark.e2e


def test_best_epoch_early_stopping_and_checkpoints(service: Service) -> None:
    train = service.upload(sentiment_rows(240))
    spec = tiny_spec(train, "unused")
    spec["dataset"] = {"source": "files", "train_file_id": train}  # no validation file
    spec["hyperparameters"] = {
        "num_train_epochs": 4,
        "learning_rate": 5e-3,
        "seed": 1,
        "metric_for_best_model": "eval_loss",
        # An improvement must beat the best by 10: none can, so training stops after the
        # second evaluation, whatever the losses are.
        "early_stopping_patience": 1,
        "early_stopping_threshold": 10.0,
        "class_weights": "balanced",
    }
    spec["metrics"] = ["accuracy", "f1"]
    job = service.wait_for(service.create_job(spec)["id"])
    assert job["status"] == "succeeded", service.logs()
    assert job["stopped_early"] is True
    assert job["data"]["validation"] == {"source": "held_out", "ratio": 0.1}
    assert (job["data"]["train_rows"], job["data"]["validation_rows"]) == (216, 24)

    rows = service.metrics(job["id"])
    assert [row["epoch"] for row in rows] == [1, 2]
    losses = {row["epoch"]: row["eval_loss"] for row in rows}
    best = min(losses, key=lambda epoch: (losses[epoch], epoch))  # ties keep the earlier
    assert job["best_epoch"] == best

    with service.client() as client:
        model = client.get(f"/v1/models/{job['model_id']}").json()
        assert model["epoch"] == best
        assert model["metrics"]["eval_loss"] == pytest.approx(losses[best])

        checkpoints = client.get(f"/v1/jobs/{job['id']}/checkpoints").json()["data"]
        assert [c["epoch"] for c in checkpoints] == [1, 2]
        assert [c["is_best"] for c in checkpoints] == [e == best for e in (1, 2)]
        assert all(c["size_bytes"] > 0 for c in checkpoints)
        assert next(c for c in checkpoints if c["is_best"])["model_id"] == job["model_id"]

        other = 2 if best == 1 else 1
        url = f"/v1/jobs/{job['id']}/checkpoints/{other}/model"
        first = client.post(url)
        assert first.status_code == 201, first.text
        again = client.post(url)
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
        assert first.json()["epoch"] == other
        same = client.post(f"/v1/jobs/{job['id']}/checkpoints/{best}/model")
        assert same.status_code == 200 and same.json()["id"] == job["model_id"]
        missing = client.post(f"/v1/jobs/{job['id']}/checkpoints/9/model")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "checkpoint_not_found"

        answer = client.post(
            f"/v1/models/{first.json()['id']}/predict", json={"inputs": ["a great film"]}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["label"] in model["labels"]
    settings = service.settings()
    assert not (settings.jobs_dir / job["id"]).exists()  # only kept weights remain
