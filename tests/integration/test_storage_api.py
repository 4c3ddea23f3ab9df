"""Download, delete, usage and quota through the API in-process, on SQLite and PostgreSQL:
files back as stored, a model's archive loaded offline with the same scores as predict, and
deletes that free the bytes (asserted on disk and in GET /v1/usage)."""

import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from app.core.config import get_settings
from app.core.db import session_scope
from app.models.card import CARD_NAME
from app.storage import get_storage
from app.tables import Job, JobCheckpoint, JobMetric, JobStatus, TrainedModel, new_id
from tests.integration.test_api import assert_error, upload_rows
from tests.support.auth import issue_test_key, tenant_id_of
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows

LABELS = ["neg", "pos"]


@pytest.fixture
def client(configured: Path, database_url: str) -> Iterator[TestClient]:
    from app.main import create_app

    key = issue_test_key(database_url)
    with TestClient(create_app(), headers={"Authorization": f"Bearer {key}"}) as test_client:
        yield test_client


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def usage(client: TestClient) -> dict[str, int]:
    answer = client.get("/v1/usage")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["total_bytes"] == sum(body["bytes"].values())
    return dict(body["bytes"])


def add_succeeded_job(tiny_model_dir: Path, train_file: str, epochs: int = 2) -> tuple[str, str]:
    """A succeeded job as the worker leaves it: kept epochs under checkpoints/<job>/, its
    metrics rows, and its model (the best epoch's weights) under models/<id>/; (job, model)."""
    settings = get_settings()
    storage = get_storage(settings)
    with session_scope() as session:
        tenant_id = tenant_id_of(session)
        job = Job(
            id=new_id("job"),
            tenant_id=tenant_id,
            status=JobStatus.succeeded,
            spec=tiny_spec(train_file, train_file, metrics=["accuracy"]),
            total_epochs=float(epochs),
            epoch=float(epochs),
            step=10 * epochs,
            attempts=1,
            cancel_requested=False,
            summary={
                "train_rows": 40,
                "validation_rows": 10,
                "validation": {"source": "split"},
                "labels": LABELS,
                "train_label_counts": {"neg": 20, "pos": 20},
            },
            best_epoch=epochs,
        )
        session.add(job)
        session.flush()
        for epoch in range(1, epochs + 1):
            folder = f"checkpoints/{job.id}/epoch-{epoch}-a1"
            for path in tiny_model_dir.iterdir():
                storage.put(f"{folder}/{path.name}", path.read_bytes())
            size = storage.size(folder + "/")
            session.add(
                JobCheckpoint(
                    job_id=job.id, epoch=epoch, step=10 * epoch, path=folder, size_bytes=size
                )
            )
            session.add(
                JobMetric(
                    job_id=job.id,
                    epoch=epoch,
                    step=10 * epoch,
                    train_loss=0.7,
                    eval_loss=0.6 / epoch,
                    metrics={"accuracy": 0.5 + epoch / 10},
                    elapsed_seconds=1.0,
                )
            )
        model = TrainedModel(
            id=new_id("mdl"),
            tenant_id=tenant_id,
            job_id=job.id,
            epoch=epochs,
            base_model="tiny",
            labels=LABELS,
            text_pair=False,
            metrics={"accuracy": 0.7},
        )
        target = settings.models_dir / model.id
        shutil.copytree(tiny_model_dir, target)
        config = json.loads((target / "config.json").read_text())
        config["id2label"] = dict(enumerate(LABELS))
        config["label2id"] = {label: i for i, label in enumerate(LABELS)}
        (target / "config.json").write_text(json.dumps(config))
        (target / "training_args.bin").write_bytes(b"a pickle never served")
        model.size_bytes = storage.size(f"models/{model.id}/")
        job.model_id = model.id
        session.add(model)
        return job.id, model.id


def test_a_file_comes_back_as_stored_and_its_delete_frees_the_bytes(client: TestClient) -> None:
    content = "".join(json.dumps(row) + "\n" for row in sentiment_rows(20))
    answer = client.post("/v1/files", files={"file": ("trainé set.jsonl", content)})
    assert answer.status_code == 201, answer.text
    file_id = answer.json()["id"]

    got = client.get(f"/v1/files/{file_id}/content")
    assert got.status_code == 200
    assert got.content == content.encode()
    assert got.headers["content-type"].startswith("application/jsonl")
    assert got.headers["content-length"] == str(len(content.encode()))
    assert "filename*=UTF-8''train%C3%A9%20set.jsonl" in got.headers["content-disposition"]
    assert usage(client)["files"] == len(content.encode())

    uploads = get_settings().uploads_dir
    before = disk_bytes(uploads)
    assert client.delete(f"/v1/files/{file_id}").status_code == 204
    assert before - disk_bytes(uploads) == len(content.encode())
    assert usage(client)["files"] == 0
    assert_error(client.get(f"/v1/files/{file_id}"), 404, "file_not_found")
    assert_error(client.get(f"/v1/files/{file_id}/content"), 404, "file_not_found")
    assert_error(client.delete(f"/v1/files/{file_id}"), 404, "file_not_found")


def test_a_file_a_queued_job_reads_cannot_be_deleted(client: TestClient) -> None:
    train = upload_rows(client, sentiment_rows(20))
    job = client.post("/v1/jobs", json=tiny_spec(train, train)).json()
    refused = client.delete(f"/v1/files/{train}")
    assert_error(refused, 409, "file_in_use")
    assert job["id"] in refused.json()["error"]["message"]
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    assert client.delete(f"/v1/files/{train}").status_code == 204


def test_another_tenants_files_models_and_jobs_cannot_be_read_or_deleted(
    client: TestClient, database_url: str, tiny_model_dir: Path
) -> None:
    train = upload_rows(client, sentiment_rows(10))
    job_id, model_id = add_succeeded_job(tiny_model_dir, train)
    other = issue_test_key(database_url, tenant="other")
    headers = {"Authorization": f"Bearer {other}"}
    for method, path in (
        ("GET", f"/v1/files/{train}/content"),
        ("DELETE", f"/v1/files/{train}"),
        ("GET", f"/v1/models/{model_id}/archive"),
        ("DELETE", f"/v1/models/{model_id}"),
        ("DELETE", f"/v1/jobs/{job_id}"),
    ):
        assert client.request(method, path, headers=headers).status_code == 404, path
    assert client.get(f"/v1/files/{train}/content").status_code == 200
    other_usage = client.get("/v1/usage", headers=headers).json()["bytes"]
    assert other_usage == {"files": 0, "models": 0, "checkpoints": 0, "outputs": 0}


def test_the_archive_loads_offline_and_scores_as_predict_does(
    client: TestClient, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    train = upload_rows(client, sentiment_rows(10))
    _, model_id = add_succeeded_job(tiny_model_dir, train)
    with client.stream("GET", f"/v1/models/{model_id}/archive") as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/gzip"
        assert "content-length" not in answer.headers  # streamed as it is made
        body = b"".join(answer.iter_bytes())
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        names = archive.getnames()
        archive.extractall(tmp_path, filter="data")
    folder = tmp_path / model_id
    assert f"{model_id}/model.safetensors" in names
    assert f"{model_id}/config.json" in names
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)

    texts = ["the movie was great", "awful plot", "it"]
    served = client.post(
        f"/v1/models/{model_id}/predict", json={"inputs": texts, "precision": "fp32"}
    )
    assert served.status_code == 200, served.text
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, local_files_only=True, use_safetensors=True
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    classifier = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None)
    for scored, prediction in zip(
        cast(list[list[dict[str, Any]]], classifier(texts)),
        served.json()["predictions"],
        strict=True,
    ):
        offline = {item["label"]: item["score"] for item in scored}
        assert set(offline) == set(LABELS)
        for label, score in prediction["scores"].items():
            assert offline[label] == pytest.approx(score, abs=1e-4)


def test_get_model_has_the_card_facts(client: TestClient, tiny_model_dir: Path) -> None:
    train = upload_rows(client, sentiment_rows(10))
    job_id, model_id = add_succeeded_job(tiny_model_dir, train)
    model = client.get(f"/v1/models/{model_id}").json()
    card = model["card"]
    assert card["data"]["train_rows"] == 40
    assert card["hyperparameters"] == {}
    assert card["dataset"]["train_file_id"] == train
    assert [row["epoch"] for row in card["epochs"]] == [1, 2]
    assert card["best_epoch"] == 2
    assert card["evaluations"] == [] and card["confusion_matrix"] is None
    assert model["size_bytes"] > 0
    # The list stays light: no card there.
    assert client.get("/v1/models").json()["data"][0]["card"] is None
    # A registered checkpoint gets a card of its own (epoch 1's weights).
    registered = client.post(f"/v1/jobs/{job_id}/checkpoints/1/model")
    assert registered.status_code == 201, registered.text
    new_id_ = registered.json()["id"]
    readme = (get_settings().models_dir / new_id_ / CARD_NAME).read_text()
    assert f"# {new_id_}" in readme and "| 1 | 10 |" in readme
    assert registered.json()["size_bytes"] > 0


def test_deleting_a_model_frees_its_folder_and_later_predicts_answer_404(
    client: TestClient, tiny_model_dir: Path
) -> None:
    train = upload_rows(client, sentiment_rows(10))
    _, model_id = add_succeeded_job(tiny_model_dir, train)
    assert (
        client.post(f"/v1/models/{model_id}/predict", json={"inputs": ["good"]}).status_code == 200
    )
    folder = get_settings().models_dir / model_id
    stored = disk_bytes(folder)
    before = usage(client)
    assert before["models"] == stored

    assert client.delete(f"/v1/models/{model_id}").status_code == 204
    assert not folder.exists()
    assert usage(client)["models"] == before["models"] - stored
    assert_error(
        client.post(f"/v1/models/{model_id}/predict", json={"inputs": ["good"]}),
        404,
        "model_not_found",
    )
    assert_error(client.get(f"/v1/models/{model_id}"), 404, "model_not_found")
    assert_error(client.get(f"/v1/models/{model_id}/archive"), 404, "model_not_found")


def test_a_model_a_queued_job_starts_from_cannot_be_deleted(
    client: TestClient, tiny_model_dir: Path
) -> None:
    train = upload_rows(client, sentiment_rows(10))
    _, model_id = add_succeeded_job(tiny_model_dir, train)
    job = client.post("/v1/jobs", json=tiny_spec(train, train, base_model=model_id))
    assert job.status_code == 201, job.text
    refused = client.delete(f"/v1/models/{model_id}")
    assert_error(refused, 409, "model_in_use")
    assert job.json()["id"] in refused.json()["error"]["message"]


def test_deleting_a_job_removes_its_rows_and_kept_weights(
    client: TestClient, tiny_model_dir: Path
) -> None:
    train = upload_rows(client, sentiment_rows(10))
    queued = client.post("/v1/jobs", json=tiny_spec(train, train)).json()["id"]
    assert_error(client.delete(f"/v1/jobs/{queued}"), 409, "job_not_finished")

    job_id, model_id = add_succeeded_job(tiny_model_dir, train)
    refused = client.delete(f"/v1/jobs/{job_id}")
    assert_error(refused, 409, "job_has_models")
    assert model_id in refused.json()["error"]["message"]

    kept = get_settings().resolved_data_dir / "checkpoints" / job_id
    kept_bytes = disk_bytes(kept)
    assert kept_bytes > 0 and usage(client)["checkpoints"] == kept_bytes
    assert client.delete(f"/v1/models/{model_id}").status_code == 204
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert not kept.exists()
    assert usage(client) == {
        "files": usage(client)["files"],
        "models": 0,
        "checkpoints": 0,
        "outputs": 0,
    }
    assert_error(client.get(f"/v1/jobs/{job_id}"), 404, "job_not_found")
    with session_scope() as session:
        for table in (JobCheckpoint, JobMetric):
            assert session.query(table).filter_by(job_id=job_id).count() == 0
    # The cancelled job can go too; the file it read stays.
    client.post(f"/v1/jobs/{queued}/cancel")
    assert client.delete(f"/v1/jobs/{queued}").status_code == 204
    assert client.get(f"/v1/files/{train}").status_code == 200


def test_the_storage_quota_refuses_uploads_and_new_jobs(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = upload_rows(client, sentiment_rows(10))
    used = usage(client)["files"]
    monkeypatch.setattr(get_settings(), "max_storage_bytes_per_tenant", used + 10)
    assert_error(
        client.post(
            "/v1/files",
            files={"file": ("d.jsonl", (json.dumps({"sentence": "a", "label": "b"}) + "\n") * 2)},
        ),
        413,
        "storage_quota_exceeded",
    )
    assert client.post("/v1/jobs", json=tiny_spec(train, train)).status_code == 201
    monkeypatch.setattr(get_settings(), "max_storage_bytes_per_tenant", used)
    assert_error(
        client.post("/v1/jobs", json=tiny_spec(train, train)), 403, "storage_quota_exceeded"
    )
    assert client.get("/v1/usage").json()["limit_bytes"] == used


def test_the_worker_loads_a_trained_base_model_through_the_storage(
    client: TestClient, tiny_model_dir: Path
) -> None:
    from worker.errors import JobFailure
    from worker.training import load_base

    train = upload_rows(client, sentiment_rows(10))
    _, model_id = add_succeeded_job(tiny_model_dir, train)
    tokenizer, model = load_base(get_settings(), model_id, LABELS)
    assert model.config.id2label == dict(enumerate(LABELS))
    assert client.delete(f"/v1/models/{model_id}").status_code == 204
    with pytest.raises(JobFailure) as failure:
        load_base(get_settings(), model_id, LABELS)
    assert failure.value.code == "base_model_unavailable"
