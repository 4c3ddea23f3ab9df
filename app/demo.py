"""`tuneserve demo`: the Hugging Face course's MRPC fine-tune, through a running service."""

import time
from pathlib import Path
from typing import Any

import httpx

DEFAULT_MRPC = Path("../shared/data/glue/MRPC")
EXAMPLES = [
    {
        "text": "The company said profits rose 10 percent in the third quarter.",
        "text_pair": "Third-quarter profits climbed 10 percent, the company said.",
    },
    {
        "text": "The cat sat on the mat all afternoon.",
        "text_pair": "Stock markets fell sharply in early trading on Monday.",
    },
]


def _check(response: httpx.Response) -> Any:
    if response.is_error:
        raise SystemExit(f"{response.request.method} {response.request.url}: {response.text}")
    return response.json()


def _upload(client: httpx.Client, path: Path, rows: int | None) -> str:
    content = path.read_bytes()
    if rows is not None:
        content = b"\n".join(content.splitlines()[: rows + 1]) + b"\n"
    upload = _check(client.post("/v1/files", files={"file": (path.name, content)}))
    print(f"uploaded {path} as {upload['id']}: {upload['row_count']} rows")
    return str(upload["id"])


def _dataset(client: httpx.Client, data_dir: Path | None, train_rows: int | None) -> dict[str, Any]:
    folder = data_dir or DEFAULT_MRPC
    if (folder / "train.tsv").is_file():
        return {
            "source": "files",
            "train_file_id": _upload(client, folder / "train.tsv", train_rows),
            "validation_file_id": _upload(client, folder / "dev.tsv", None),
        }
    print(f"no MRPC files in {folder}; using the Hub dataset glue/mrpc")
    return {"source": "hub", "name": "nyu-mll/glue", "config": "mrpc"}


def wait_until_up(url: str, seconds: int = 120) -> None:
    """Wait for a service that may still be starting (the README starts it just before)."""
    for _ in range(seconds):
        try:
            httpx.get(f"{url}/healthz", timeout=5).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(1)
    raise SystemExit(f"no tuneserve at {url}; start it with `tuneserve up`")


def run_demo(
    url: str,
    api_key: str,
    data_dir: Path | None,
    base_model: str,
    epochs: int,
    train_rows: int | None,
) -> int:
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        dataset = _dataset(client, data_dir, train_rows)
        hub = dataset["source"] == "hub"
        spec = {
            "base_model": base_model,
            "dataset": dataset,
            "text_column": "sentence1" if hub else "#1 String",
            "text_pair_column": "sentence2" if hub else "#2 String",
            "label_column": "label" if hub else "Quality",
            "hyperparameters": {"num_train_epochs": epochs},
            "metrics": ["accuracy", "f1"],
        }
        job = _check(client.post("/v1/jobs", json=spec))
        print(f"job {job['id']} {job['status']}; {epochs} epochs of {base_model}")
        shown = 0
        started = time.monotonic()
        while True:
            job = _check(client.get(f"/v1/jobs/{job['id']}"))
            rows = _check(client.get(f"/v1/jobs/{job['id']}/metrics"))["data"]
            for row in rows[shown:]:
                scores = "  ".join(f"{k} {v:.4f}" for k, v in row["metrics"].items())
                print(
                    f"epoch {row['epoch']}  step {row['step']}  train_loss {row['train_loss']:.4f}"
                    f"  eval_loss {row['eval_loss']:.4f}  {scores}  ({row['elapsed_seconds']:.0f} s)"
                )
            shown = len(rows)
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(2)
        print(f"job {job['status']} after {time.monotonic() - started:.0f} s")
        if job["status"] != "succeeded":
            print(f"error: {job['error']}")
            return 1
        model_id = job["model_id"]
        answer = _check(client.post(f"/v1/models/{model_id}/predict", json={"inputs": EXAMPLES}))
        for example, prediction in zip(EXAMPLES, answer["predictions"], strict=True):
            print(f"{prediction['label']}  {prediction['scores']}  {example}")
        print(f"model {model_id}: POST {url}/v1/models/{model_id}/predict")
    return 0
