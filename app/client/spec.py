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
    validation_file_id: str | None,
    text_column: str,
    label_column: str,
    text_pair_column: str | None = None,
    epochs: int | None = None,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    metrics: str | None = None,
    task: str | None = None,
    label_delimiter: str | None = None,
    threshold: float | None = None,
    label_names: dict[str, str] | None = None,
    class_weights: str | None = None,
    metric_for_best_model: str | None = None,
) -> dict[str, Any]:
    """A spec over uploaded files; options left out take the server's defaults."""
    hyperparameters = {
        key: value
        for key, value in (
            ("num_train_epochs", epochs),
            ("learning_rate", learning_rate),
            ("per_device_train_batch_size", batch_size),
            ("seed", seed),
            ("class_weights", class_weights),
            ("metric_for_best_model", metric_for_best_model),
        )
        if value is not None
    }
    spec: dict[str, Any] = {
        "base_model": base_model,
        "dataset": {"source": "files", "train_file_id": train_file_id},
        "text_column": text_column,
        "label_column": label_column,
    }
    if validation_file_id:
        spec["dataset"]["validation_file_id"] = validation_file_id
    if text_pair_column:
        spec["text_pair_column"] = text_pair_column
    if hyperparameters:
        spec["hyperparameters"] = hyperparameters
    if metrics:
        spec["metrics"] = [name.strip() for name in metrics.split(",") if name.strip()]
    for key, value in (
        ("task", task),
        ("label_delimiter", label_delimiter),
        ("threshold", threshold),
        ("label_names", label_names),
    ):
        if value is not None:
            spec[key] = value
    return spec


def load_label_names(path: Path) -> dict[str, str]:
    """`--label-names`: a JSON object of value -> name, or one name a line (line n names the
    value n-1, as GoEmotions' emotions.txt and most label lists)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if text.lstrip().startswith("{"):
        try:
            names = json.loads(text)
        except ValueError as exc:
            raise ClientError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
            raise ClientError(f"{path} must map label values to names")
        return {str(key): value for key, value in names.items()}
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ClientError(f"{path} names no labels")
    return {str(i): name for i, name in enumerate(lines)}
