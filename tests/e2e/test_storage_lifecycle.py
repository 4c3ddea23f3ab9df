"""End to end, in both run modes, through the real API, worker and `tuneserve` client: a
trained model's card, its archive loaded offline with the scores predict gives, usage, and
deletes that free the disk (in bytes) and make later predicts answer 404."""

import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from tests.e2e.test_service_tiny_model import service as service  # noqa: F401  (both modes)
from tests.support.service import Service
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows

pytestmark = pytest.mark.e2e


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def cli(service: Service, *args: str) -> str:
    result: subprocess.CompletedProcess[str] = service.cli(
        *args, "--url", service.url, "--api-key", service.api_key
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def usage(service: Service) -> dict[str, int]:
    return dict(json.loads(cli(service, "usage", "--json"))["bytes"])


@pytest.fixture
def trained(service: Service) -> Iterator[dict[str, str]]:
    train = service.upload(sentiment_rows(120))
    validation = service.upload(sentiment_rows(40, seed=1), name="dev.jsonl")
    spec = tiny_spec(train, validation, metrics=["accuracy"])
    spec["hyperparameters"] = {"num_train_epochs": 2, "learning_rate": 5e-3, "seed": 1}
    job = service.wait_for(service.create_job(spec)["id"])
    assert job["status"] == "succeeded", service.logs()
    yield {"train": train, "validation": validation, "job": job["id"], "model": job["model_id"]}


def test_card_archive_usage_and_deletes(
    service: Service,
    trained: dict[str, str],
    tmp_path: Path,
) -> None:
    from transformers import pipeline

    settings = service.settings()
    model_id, job_id = trained["model"], trained["job"]

    with service.client() as client:
        model = client.get(f"/v1/models/{model_id}").json()
    card = model["card"]
    assert [row["epoch"] for row in card["epochs"]] == [1, 2]
    assert card["data"]["train_rows"] == 120 and card["data"]["validation_rows"] == 40
    assert card["hyperparameters"]["num_train_epochs"] == 2
    assert card["best_epoch"] in (1, 2)
    readme = (settings.models_dir / model_id / "README.md").read_text()
    assert f"# {model_id}" in readme and "## Metrics per epoch" in readme
    assert model["size_bytes"] == disk_bytes(settings.models_dir / model_id)

    # Download through the CLI, unpack, load offline: the same scores as the service's fp32.
    out = cli(service, "models", "download", model_id, "-o", str(tmp_path))
    assert "mdl_" in out
    with tarfile.open(tmp_path / f"{model_id}.tar.gz", "r:gz") as archive:
        names = archive.getnames()
        archive.extractall(tmp_path / "unpacked", filter="data")
    assert f"{model_id}/README.md" in names and f"{model_id}/model.safetensors" in names
    assert not any(name.endswith((".bin", ".pt", ".pkl", ".pth")) for name in names)
    texts = ["the movie was great", "terrible plot and sad actors", "it"]
    with service.client() as client:
        served = client.post(
            f"/v1/models/{model_id}/predict", json={"inputs": texts, "precision": "fp32"}
        ).json()["predictions"]
    classifier = pipeline(
        "text-classification", model=str(tmp_path / "unpacked" / model_id), top_k=None
    )
    for scored, prediction in zip(
        cast(list[list[dict[str, Any]]], classifier(texts)), served, strict=True
    ):
        offline = {item["label"]: item["score"] for item in scored}
        assert offline.keys() == prediction["scores"].keys()
        for label, score in prediction["scores"].items():
            assert offline[label] == pytest.approx(score, abs=1e-4)

    # A file comes back as stored.
    cli(service, "files", "download", trained["train"], "-o", str(tmp_path / "train.jsonl"))
    stored = next(settings.uploads_dir.glob(f"{trained['train']}.*"))
    assert (tmp_path / "train.jsonl").read_bytes() == stored.read_bytes()

    # Usage from the rows matches the disk.
    kept = settings.resolved_data_dir / "checkpoints" / job_id
    before = usage(service)
    assert before["models"] == disk_bytes(settings.models_dir)
    assert before["checkpoints"] == disk_bytes(kept) > 0
    assert before["files"] == disk_bytes(settings.uploads_dir)
    assert "2 *" in cli(service, "jobs", "checkpoints", job_id) or "1 *" in cli(
        service, "jobs", "checkpoints", job_id
    )

    # The job keeps its model: deleting the job first is refused.
    refused = service.cli(
        "jobs", "delete", job_id, "--url", service.url, "--api-key", service.api_key
    )
    assert refused.returncode == 1 and "job_has_models" in refused.stderr

    model_bytes = disk_bytes(settings.models_dir / model_id)
    cli(service, "models", "delete", model_id)
    assert not (settings.models_dir / model_id).exists()
    with service.client() as client:
        gone = client.post(f"/v1/models/{model_id}/predict", json={"inputs": ["good"]})
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"
        assert client.get(f"/v1/models/{model_id}/archive").status_code == 404
    after_model = usage(service)
    assert after_model["models"] == before["models"] - model_bytes

    cli(service, "jobs", "delete", job_id)
    assert not kept.exists()
    for file_id in (trained["train"], trained["validation"]):
        cli(service, "files", "delete", file_id)
    assert usage(service) == {"files": 0, "models": 0, "checkpoints": 0, "outputs": 0}
    assert disk_bytes(settings.uploads_dir) == 0
    with service.client() as client:
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404
