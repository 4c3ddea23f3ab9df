"""Real data, all-MiniLM-L6-v2, embedded mode: regression on GLUE STS-B, a few hundred rows.

(GoEmotions multi-label on 2,000 rows, 4 epochs, only ever predicted `neutral`: micro F1 equal
to the most-frequent-label baseline, 0.284. Its real-data test waits for a recipe that learns
the rarer emotions on a 2-core budget.)"""

from typing import Any

import pytest

from tests.conftest import SHARED_DATA
from tests.e2e.test_mrpc_real_data import minilm_service as minilm_service  # noqa: F401
from tests.support.service import Service

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STSB = SHARED_DATA / "glue" / "STS-B"


def lines(path: Any, count: int, skip: int = 0) -> bytes:
    with path.open("rb") as handle:
        return b"".join(line for i, line in enumerate(handle) if skip <= i < skip + count)


def run(service: Service, spec: dict[str, Any]) -> dict[str, Any]:
    job = service.follow_to_end(service.create_job(spec)["id"])
    assert job["status"] == "succeeded", service.logs()
    return job


def hyperparameters(epochs: int, learning_rate: float) -> dict[str, Any]:
    return {
        "num_train_epochs": epochs,
        "learning_rate": learning_rate,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 64,
        "seed": 42,
    }


def test_stsb_regression_correlates(minilm_service: Service) -> None:  # noqa: F811
    if not (STSB / "train.tsv").is_file():
        pytest.skip("STS-B not in ../shared")
    service = minilm_service
    train = service.upload_bytes("train.tsv", lines(STSB / "train.tsv", 401))
    dev = service.upload_bytes("dev.tsv", lines(STSB / "dev.tsv", 201))
    job = run(
        service,
        {
            "base_model": "all-MiniLM-L6-v2",
            "dataset": {"source": "files", "train_file_id": train, "validation_file_id": dev},
            "text_column": "sentence1",
            "text_pair_column": "sentence2",
            "label_column": "score",
            "hyperparameters": hyperparameters(3, 1e-4),
        },
    )
    assert job["data"]["task"] == "regression"  # inferred: scores have fractions
    best = service.metrics(job["id"])[job["best_epoch"] - 1]["metrics"]
    print(f"STS-B dev (200 pairs) after training on 400: {best}")
    assert best["pearson"] > 0.3
