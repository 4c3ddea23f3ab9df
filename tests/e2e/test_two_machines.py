"""Issue 16's cluster on one host: one API process and two workers, each with a data directory
of its own (no shared volume), on PostgreSQL + Redis + SeaweedFS. The first worker is killed
(kill -9) mid-epoch 2; the second resumes from the checkpoint the first stored, on its own
disk; predict and the archive come through the API from the store; deletes free the store.
And the store down for 30 s while a job stores a checkpoint, and again over its final upload."""

import io
import os
import re
import signal
import tarfile
import time
from pathlib import Path

import pytest

from tests.e2e.test_faults import assert_finished_once, make_service, spec, wait_until
from tests.support.seaweedfs import S3Server
from tests.support.service import Service
from tests.support.tiny_model import sentiment_rows

pytestmark = pytest.mark.e2e


def on_store(
    tmp_path: Path, tiny_model_dir: Path, server: S3Server, pg: str, redis: str
) -> Service:
    """Production mode on the store, not started: each test starts the processes it needs."""
    env = {**server.env(server.prefix()), "TUNESERVE_DATA_DIR": str(tmp_path / "api")}
    return make_service(tmp_path, tiny_model_dir, pg, redis, **env)


def machine(tmp_path: Path, name: str) -> dict[str, str]:
    return {"TUNESERVE_DATA_DIR": str(tmp_path / name)}


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_a_job_resumes_on_another_machine_from_the_stored_checkpoint(
    s3_server: S3Server, tmp_path: Path, tiny_model_dir: Path, postgres_url: str, redis_url: str
) -> None:
    cluster = on_store(tmp_path, tiny_model_dir, s3_server, postgres_url, redis_url)
    try:
        resume_elsewhere(cluster, s3_server, tmp_path)
    finally:
        cluster.stop()


def resume_elsewhere(cluster: Service, s3_server: S3Server, tmp_path: Path) -> None:
    prefix = cluster.env["TUNESERVE_STORAGE_URL"].rsplit("/", 1)[1]
    cluster.start(worker=False)
    first = cluster.start_worker("worker-a", env=machine(tmp_path, "machine-a"))
    train = cluster.upload(sentiment_rows(240))
    dev = cluster.upload(sentiment_rows(40, seed=1), name="dev.jsonl")
    job_id = cluster.create_job(spec(train, dev, epochs=3))["id"]
    wait_until(lambda: cluster.job(job_id)["progress"]["epoch"] > 1.3)
    resume = f"checkpoints/{job_id}/resume/"
    assert any(k.startswith(f"{resume}checkpoint-30-a1/") for k in s3_server.keys(prefix))
    os.killpg(first.pid, signal.SIGKILL)  # the machine is gone, and its disk with it
    first.wait()

    cluster.start_worker("worker-b", env=machine(tmp_path, "machine-b"))
    done = assert_finished_once(cluster, job_id, 3)
    assert done["attempts"] == 2
    log = (tmp_path / "worker-b.log").read_text()
    resumed = re.findall(r"resumes from (\S*checkpoint-(\d+))", log)
    assert [
        (Path(path).is_relative_to(tmp_path / "machine-b"), step) for path, step in resumed
    ] == [(True, "30")]  # from the end of epoch 1, on machine b's own disk
    assert not files_under(tmp_path / "machine-b" / "jobs")  # its scratch is cleared

    keys = s3_server.keys(prefix)
    assert not any(k.startswith(resume) for k in keys)  # nothing resumes from a finished job
    kept = {k.split("/")[2] for k in keys if k.startswith(f"checkpoints/{job_id}/")}
    assert kept == {"epoch-1-a1", "epoch-2-a2", "epoch-3-a2"}  # epoch 1 from machine a
    model_id = done["model_id"]
    with cluster.client() as client:
        predicted = client.post(f"/v1/models/{model_id}/predict", json={"inputs": ["so good"]})
        assert predicted.status_code == 200, predicted.text
        archive = client.get(f"/v1/models/{model_id}/archive")
        assert archive.status_code == 200, archive.text
        with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
            assert f"{model_id}/model.safetensors" in tar.getnames()
        checkpoints = client.get(f"/v1/jobs/{job_id}/checkpoints").json()["data"]
        assert [c["epoch"] for c in checkpoints] == [1, 2, 3]
        # The API read the model from the store into its cache, not from a worker's disk.
        api_data = cluster.settings().resolved_data_dir
        assert not files_under(api_data / "models") and not (api_data / "checkpoints").exists()

        assert client.delete(f"/v1/models/{model_id}").status_code == 204
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
        for file_id in (train, dev):
            assert client.delete(f"/v1/files/{file_id}").status_code == 204
    assert s3_server.keys(prefix) == []  # every object counted: the store is empty again


def test_the_store_down_for_30_s_at_a_checkpoint_is_survived(
    own_s3_server: S3Server, tmp_path: Path, tiny_model_dir: Path, postgres_url: str, redis_url: str
) -> None:
    """The store stops answering (SIGSTOP: requests hang, as on a dead network) during epoch
    1 and stays down for 30 s, over the upload of epoch 1's checkpoint: the upload waits and
    is retried, the job goes on in the same attempt. Down again for 10 s over the final
    uploads: the job is not `succeeded` until its model is stored whole, and then it is."""
    service = on_store(tmp_path, tiny_model_dir, own_s3_server, postgres_url, redis_url)
    service.env["TUNESERVE_LEASE_SECONDS"] = "10"
    try:
        store_down(service, own_s3_server)
    finally:
        service.stop()


def store_down(service: Service, s3_server: S3Server) -> None:
    prefix = service.env["TUNESERVE_STORAGE_URL"].rsplit("/", 1)[1]
    service.start()
    train = service.upload(sentiment_rows(240))
    dev = service.upload(sentiment_rows(40, seed=1), name="dev.jsonl")
    job_id = service.create_job(spec(train, dev, epochs=2))["id"]
    wait_until(lambda: service.job(job_id)["progress"]["epoch"] > 0.5)
    with s3_server.paused():
        time.sleep(30)
        stalled = service.job(job_id)  # the API reads jobs from the database alone
        assert stalled["status"] == "running"
        assert stalled["progress"]["epoch"] == 1.0  # waiting on epoch 1's checkpoint
    wait_until(lambda: service.job(job_id)["progress"]["epoch"] >= 1.5)
    with s3_server.paused():  # over the end: epoch 2's weights and the model are uploaded
        time.sleep(10)
        assert service.job(job_id)["status"] == "running"  # not succeeded without its model
    done = assert_finished_once(service, job_id, 2)
    assert done["attempts"] == 1
    keys = s3_server.keys(prefix)
    model = done["model_id"]
    assert f"models/{model}/_manifest.json" in keys
    kept = {k.split("/")[2] for k in keys if k.startswith(f"checkpoints/{job_id}/")}
    assert kept == {"epoch-1-a1", "epoch-2-a1"}
    with service.client() as client:
        answer = client.post(f"/v1/models/{model}/predict", json={"inputs": ["good"]})
        assert answer.status_code == 200, answer.text
