"""Hub datasets and base models through the real API and worker, from a local Hub cache."""

from pathlib import Path
from typing import Any

import pytest

from tests.support.hub_cache import add_hub_repo, add_model_folder, dataset_card
from tests.support.service import Service
from tests.support.tiny_model import sentiment_rows

pytestmark = pytest.mark.e2e


def csv(rows: list[dict[str, str]]) -> str:
    return "sentence,label\n" + "".join(f"{r['sentence']},{r['label']}\n" for r in rows)


def card(train: str, validation: str) -> str:
    return dataset_card(
        f"""
configs:
- config_name: default
  data_files:
  - split: train
    path: '{train}'
  - split: validation
    path: '{validation}'
"""
    )


def test_hostile_hub_dataset_fails_at_once_and_a_benign_one_trains(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    cache = tmp_path / "hf-cache"
    data_dir = tmp_path / "data"
    uploads = data_dir.resolve() / "files"
    add_model_folder(cache, "org/tiny", tiny_model_dir, {"pytorch_model.bin": b"not loaded"})
    train, dev = csv(sentiment_rows(40)), csv(sentiment_rows(10, seed=1))
    add_hub_repo(
        cache,
        "dataset",
        "me/good",
        {
            "README.md": card("data/train.csv", "data/dev.csv"),
            "data/train.csv": train,
            "data/dev.csv": dev,
        },
    )
    add_hub_repo(cache, "dataset", "me/x", {"README.md": card(f"{uploads}/*", f"{uploads}/*")})
    add_hub_repo(
        cache, "dataset", "me/ssrf", {"README.md": card("http://127.0.0.1:1/a.csv", "b.csv")}
    )
    env = {
        "TUNESERVE_DATA_DIR": str(data_dir),
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
    }
    service = Service(env, tmp_path, embedded=True)
    try:
        service.start()
        service.upload(sentiment_rows(20))  # another tenant's upload lies in files/

        def hub_job(name: str) -> dict[str, Any]:
            spec = {
                "base_model": "org/tiny",
                "dataset": {"source": "hub", "name": name},
                "text_column": "sentence",
                "label_column": "label",
                "hyperparameters": {"num_train_epochs": 1},
            }
            return service.wait_for(service.create_job(spec)["id"])

        for name in ("me/x", "me/ssrf"):
            failed = hub_job(name)
            assert failed["status"] == "failed", failed
            assert failed["error"]["code"] == "invalid_dataset", failed
            assert failed["attempts"] == 1
        done = hub_job("me/good")
        assert done["status"] == "succeeded", service.logs()
        assert not any((data_dir / "jobs").iterdir())  # downloads removed with the job folder
    finally:
        service.stop()
