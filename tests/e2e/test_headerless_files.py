"""End to end, in both run modes: a worker trains on, and labels, files with no header line,
reading the columns that the upload reported."""

import csv
import io
import time
from typing import Any

import pytest

from tests.e2e.test_model_lifecycle import service as service  # noqa: F401  (the fixture)
from tests.support.service import TERMINAL, Service
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows

pytestmark = pytest.mark.e2e


def headerless_tsv(rows: list[dict[str, str]]) -> bytes:
    return "".join(f"{r['sentence']}\t{r['label']}\n" for r in rows).encode()


def upload(service: Service, content: bytes, data: dict[str, str]) -> dict[str, Any]:
    with service.client() as client:
        response = client.post("/v1/files", files={"file": ("d.tsv", content)}, data=data)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_train_and_label_headerless_files(service: Service) -> None:  # noqa: F811
    train = upload(service, headerless_tsv(sentiment_rows(120)), {"header": "false"})
    assert (train["columns"], train["row_count"]) == (["column_1", "column_2"], 120)
    names = {"header": "false", "column_names": "column_1,column_2"}
    validation = upload(service, headerless_tsv(sentiment_rows(30, seed=1)), names)
    spec = tiny_spec(train["id"], validation["id"], text_column="column_1")
    spec["label_column"] = "column_2"
    spec["hyperparameters"] = {"num_train_epochs": 1, "learning_rate": 5e-3, "seed": 1}
    job = service.wait_for(service.create_job(spec)["id"])
    assert job["status"] == "succeeded", service.logs()
    # every row was read as a row: the first line of each file too
    assert (job["data"]["train_rows"], job["data"]["validation_rows"]) == (120, 30)
    assert job["data"]["labels"] == ["neg", "pos"]

    rows = sentiment_rows(9, seed=5)
    file_id = upload(service, headerless_tsv(rows), {"header": "false"})["id"]
    with service.client() as client:
        created = client.post(
            f"/v1/models/{job['model_id']}/batch-predictions", json={"file_id": file_id}
        )
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 300
        while (batch := client.get(f"/v1/batch-predictions/{created.json()['id']}").json())[
            "status"
        ] not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.3)
    assert batch["status"] == "succeeded", service.logs()
    assert batch["result"]["evaluated_rows"] == 9
    output = service.settings().uploads_dir / f"{batch['output_file_id']}.tsv"
    produced = list(csv.DictReader(io.StringIO(output.read_text()), delimiter="\t"))
    assert [r["column_1"] for r in produced] == [r["sentence"] for r in rows]
    assert [r["column_2"] for r in produced] == [r["label"] for r in rows]
