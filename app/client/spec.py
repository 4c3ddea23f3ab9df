"""The job spec of `tuneserve jobs create`: from a JSON file, or from options."""

import json
from pathlib import Path
from typing import Any

from app.client.http import ClientError


def load_spec(path: Path) -> dict[str, Any]:
    """A whole JobSpec from a JSON file; the server checks it."""
    try:
        spec = json.loads(path.read_text())
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ClientError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise ClientError(f"{path} must hold a JSON object (a job spec)")
    return spec


def build_spec(
    base_model: str,
    train_file_id: str,
    validation_file_id: str,
    text_column: str,
    label_column: str,
    text_pair_column: str | None = None,
    epochs: int | None = None,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    metrics: str | None = None,
) -> dict[str, Any]:
    """A spec over uploaded files; options left out take the server's defaults."""
    hyperparameters = {
        key: value
        for key, value in (
            ("num_train_epochs", epochs),
            ("learning_rate", learning_rate),
            ("per_device_train_batch_size", batch_size),
            ("seed", seed),
        )
        if value is not None
    }
    spec: dict[str, Any] = {
        "base_model": base_model,
        "dataset": {
            "source": "files",
            "train_file_id": train_file_id,
            "validation_file_id": validation_file_id,
        },
        "text_column": text_column,
        "label_column": label_column,
    }
    if text_pair_column:
        spec["text_pair_column"] = text_pair_column
    if hyperparameters:
        spec["hyperparameters"] = hyperparameters
    if metrics:
        spec["metrics"] = [name.strip() for name in metrics.split(",") if name.strip()]
    return spec
