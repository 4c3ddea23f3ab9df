"""Evaluation metrics from the `evaluate` library, loaded from modules shipped here."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import evaluate
import numpy as np

METRIC_MODULES = Path(__file__).parent / "metric_modules"
_AVERAGED = {"f1", "precision", "recall"}


def build_scorer(names: list[str], num_labels: int) -> Callable[[Any, Any], dict[str, float]]:
    """Scores of label ids against references: binary averaging for two labels, macro
    otherwise (the same for training's evaluations and batch evaluations)."""
    modules = {name: evaluate.load(str(METRIC_MODULES / name)) for name in names}
    average = "binary" if num_labels == 2 else "macro"

    def score(predictions: Any, references: Any) -> dict[str, float]:
        results: dict[str, float] = {}
        for name, module in modules.items():
            kwargs: dict[str, Any] = {"average": average} if name in _AVERAGED else {}
            if name in _AVERAGED:
                kwargs["zero_division"] = 0
            results.update(
                module.compute(predictions=predictions, references=references, **kwargs) or {}
            )
        return {key: float(value) for key, value in results.items()}

    return score


def build_compute_metrics(names: list[str], num_labels: int) -> Callable[[Any], dict[str, float]]:
    """A `compute_metrics` for Trainer."""
    score = build_scorer(names, num_labels)

    def compute_metrics(eval_prediction: Any) -> dict[str, float]:
        logits, references = eval_prediction
        return score(np.argmax(logits, axis=-1), references)

    return compute_metrics
