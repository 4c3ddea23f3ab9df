"""End to end on an object store: the API and a real worker with TUNESERVE_STORAGE_URL=s3://…
against SeaweedFS (authentication on). Uploads, a trained model, its kept checkpoints and a
batch prediction's output are objects in the bucket; predict and the archive read them from
there; deletes free the bucket (objects counted). A process given wrong credentials stops at
its start with one line."""

import io
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_batch_predictions import wait_batch
from tests.e2e.test_service_tiny_model import FAST_LEASES
from tests.support.seaweedfs import S3Server
from tests.support.service import ROOT, Service
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows

pytestmark = pytest.mark.e2e


@pytest.fixture
def service(
    tmp_path: Path,
    tiny_model_dir: Path,
    s3_server: S3Server,
    prefix: str,
    postgres_url: str,
    redis_url: str,
) -> Iterator[Service]:
    env = {
        **FAST_LEASES,
        **s3_server.env(prefix),
        "TUNESERVE_DATA_DIR": str(tmp_path / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(tiny_model_dir.parent),
        "TUNESERVE_QUEUE_NAME": f"e2e-s3-{uuid.uuid4().hex[:8]}",
        "TUNESERVE_DATABASE_URL": postgres_url,
        "TUNESERVE_BROKER_URL": redis_url,
    }
    service = Service(env, tmp_path, embedded=False)
    try:
        yield service.start()
    finally:
        service.stop()


def local_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_the_service_on_an_object_store(service: Service, s3_server: S3Server, prefix: str) -> None:
    train_rows = sentiment_rows(120)
    train = service.upload(train_rows)
    dev = service.upload(sentiment_rows(40, seed=1), name="dev.jsonl")
    assert s3_server.keys(prefix) == sorted([f"files/{train}.jsonl", f"files/{dev}.jsonl"])

    spec = tiny_spec(train, dev, metrics=["accuracy"])
    spec["hyperparameters"] = {"num_train_epochs": 2, "learning_rate": 5e-3, "seed": 1}
    job = service.wait_for(service.create_job(spec)["id"])
    assert job["status"] == "succeeded", service.logs()
    model_id, job_id = job["model_id"], job["id"]

    keys = s3_server.keys(prefix)
    model_keys = [k for k in keys if k.startswith(f"models/{model_id}/")]
    assert f"models/{model_id}/model.safetensors" in model_keys
    assert f"models/{model_id}/README.md" in model_keys
    assert f"models/{model_id}/_manifest.json" in model_keys  # the commit point
    assert not any(k.endswith("/_pending") for k in keys)
    epochs = {k.split("/")[2] for k in keys if k.startswith(f"checkpoints/{job_id}/")}
    assert epochs == {"epoch-1-a1", "epoch-2-a1"}
    # Nothing of it on the local disk but the download cache.
    data = service.settings().resolved_data_dir
    assert not local_files(data / "models") and not local_files(data / "files")
    assert not (data / "checkpoints").exists()

    with service.client() as client:
        answer = client.post(f"/v1/models/{model_id}/predict", json={"inputs": ["a great film"]})
        assert answer.status_code == 200, answer.text
        model = client.get(f"/v1/models/{model_id}").json()
        stored = [k for k in model_keys if not k.endswith("_manifest.json")]
        assert model["size_bytes"] > 0

        archive = client.get(f"/v1/models/{model_id}/archive")
        assert archive.status_code == 200, archive.text
        with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
            names = tar.getnames()
        assert f"{model_id}/model.safetensors" in names and f"{model_id}/README.md" in names
        assert not any("_manifest" in name or "_pending" in name for name in names)

        content = client.get(f"/v1/files/{train}/content")
        assert content.status_code == 200
        assert content.content.count(b"\n") == len(train_rows)

        # A kept checkpoint registered as a model: read from the store, stored as a new tree.
        best = job["best_epoch"]
        other = 2 if best == 1 else 1
        registered = client.post(f"/v1/jobs/{job_id}/checkpoints/{other}/model")
        assert registered.status_code == 201, registered.text
        second = registered.json()["id"]
        assert f"models/{second}/_manifest.json" in s3_server.keys(prefix)

        # A batch prediction's output is an object too; evaluating rewrites the card.
        created = client.post(f"/v1/models/{model_id}/batch-predictions", json={"file_id": dev})
        assert created.status_code == 201, created.text
        batch = wait_batch(service, created.json()["id"])
        assert batch["status"] == "succeeded", service.logs()
        output = batch["output_file_id"]
        assert any(k.startswith(f"files/{output}.") for k in s3_server.keys(prefix))
        card = client.get(f"/v1/models/{model_id}").json()["card"]
        assert card["evaluations"], card
        # The rewritten card is served, and the model still loads (a fresh process's cache).
        archive = client.get(f"/v1/models/{model_id}/archive")
        assert archive.status_code == 200
        usage = client.get("/v1/usage").json()["bytes"]
        object_bytes = {
            kind: sum(
                size
                for key, size in s3_server.sizes(prefix).items()
                if key.startswith(f"{kind}/") and not key.endswith(("_manifest.json", "_pending"))
            )
            for kind in ("files", "models", "checkpoints")
        }
        assert usage["models"] == object_bytes["models"]
        assert usage["checkpoints"] == object_bytes["checkpoints"]
        assert usage["files"] + usage.get("outputs", 0) == object_bytes["files"]
        del stored

        # Deletes free the bucket.
        before = len(s3_server.keys(prefix))
        for model in (model_id, second):
            assert client.delete(f"/v1/models/{model}").status_code == 204
            assert not [k for k in s3_server.keys(prefix) if k.startswith(f"models/{model}/")]
        gone = client.post(f"/v1/models/{model_id}/predict", json={"inputs": ["good"]})
        assert gone.status_code == 404
        assert client.get(f"/v1/models/{model_id}/archive").status_code == 404
        assert len(s3_server.keys(prefix)) < before
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
        for file_id in (train, dev, output):
            response = client.delete(f"/v1/files/{file_id}")
            assert response.status_code in (204, 404), response.text
        assert s3_server.keys(prefix) == []
        assert client.get("/v1/usage").json()["bytes"] == {
            "files": 0,
            "models": 0,
            "checkpoints": 0,
            "outputs": 0,
        }


@pytest.mark.parametrize("command", ["api", "worker"])
def test_wrong_credentials_stop_a_process_at_its_start_with_one_line(
    command: str, s3_server: S3Server, tmp_path: Path
) -> None:
    env = {
        **s3_server.env(s3_server.prefix()),
        "TUNESERVE_S3_SECRET_ACCESS_KEY": "not-the-secret",
        "TUNESERVE_DATA_DIR": str(tmp_path / "data"),
        "TUNESERVE_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        "PATH": str(Path(sys.executable).parent),
    }
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", command, "--port", "1"]
        if command == "api"
        else [sys.executable, "-m", "app.cli", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("tuneserve: the object store refused these credentials: ")
    ), done.stderr
