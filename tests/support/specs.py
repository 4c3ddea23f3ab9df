"""Job specs for the tiny test model trained on `sentiment_rows` files."""

from typing import Any


def tiny_spec(train: str, validation: str, **changes: Any) -> dict[str, Any]:
    """A spec over uploaded files with the given top-level fields replaced."""
    spec: dict[str, Any] = {
        "base_model": "tiny",
        "dataset": {"source": "files", "train_file_id": train, "validation_file_id": validation},
        "text_column": "sentence",
        "label_column": "label",
    }
    spec.update(changes)
    return spec
