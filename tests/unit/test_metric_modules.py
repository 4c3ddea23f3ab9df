"""The shipped metric modules, loaded by path as worker/metrics.py loads them, against
scikit-learn and scipy on small arrays."""

import math
from typing import Any

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    matthews_corrcoef,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    recall_score,
)

from worker.metric_modules._base import METRICS
from worker.metrics import METRIC_MODULES, build_scorer

LABELS_TRUE = np.array([0, 1, 1, 2, 0, 2, 1, 0, 2, 1])
LABELS_PRED = np.array([0, 1, 0, 2, 0, 1, 1, 2, 2, 1])
BINARY_TRUE = np.array([1, 0, 1, 1, 0, 0, 1, 0])
BINARY_PRED = np.array([1, 0, 0, 1, 1, 0, 1, 0])
VALUES_TRUE = np.array([0.0, 1.5, 2.25, 3.0, 4.75, 5.0])
VALUES_PRED = np.array([0.5, 1.0, 2.5, 3.5, 4.0, 4.25])
SETS_TRUE = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
SETS_PRED = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0]])

# name -> (predictions, references, compute kwargs, expected)
CASES: dict[str, tuple[Any, Any, dict[str, Any], float]] = {
    "accuracy": (LABELS_PRED, LABELS_TRUE, {}, accuracy_score(LABELS_TRUE, LABELS_PRED)),
    "f1": (
        LABELS_PRED,
        LABELS_TRUE,
        {"average": "macro"},
        f1_score(LABELS_TRUE, LABELS_PRED, average="macro"),
    ),
    "precision": (BINARY_PRED, BINARY_TRUE, {}, precision_score(BINARY_TRUE, BINARY_PRED)),
    "recall": (BINARY_PRED, BINARY_TRUE, {}, recall_score(BINARY_TRUE, BINARY_PRED)),
    "matthews_correlation": (
        LABELS_PRED,
        LABELS_TRUE,
        {},
        matthews_corrcoef(LABELS_TRUE, LABELS_PRED),
    ),
    "pearson": (VALUES_PRED, VALUES_TRUE, {}, pearsonr(VALUES_TRUE, VALUES_PRED).statistic),
    "spearmanr": (VALUES_PRED, VALUES_TRUE, {}, spearmanr(VALUES_TRUE, VALUES_PRED).statistic),
    "mse": (VALUES_PRED, VALUES_TRUE, {}, mean_squared_error(VALUES_TRUE, VALUES_PRED)),
    "mae": (VALUES_PRED, VALUES_TRUE, {}, mean_absolute_error(VALUES_TRUE, VALUES_PRED)),
    "f1_micro": (SETS_PRED, SETS_TRUE, {}, f1_score(SETS_TRUE, SETS_PRED, average="micro")),
    "f1_macro": (SETS_PRED, SETS_TRUE, {}, f1_score(SETS_TRUE, SETS_PRED, average="macro")),
    "subset_accuracy": (SETS_PRED, SETS_TRUE, {}, accuracy_score(SETS_TRUE, SETS_PRED)),
}


def test_every_metric_has_a_module_and_a_case() -> None:
    folders = {p.name for p in METRIC_MODULES.iterdir() if (p / f"{p.name}.py").is_file()}
    assert folders == set(METRICS) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_module_loaded_by_path_matches_reference(name: str) -> None:
    import evaluate

    predictions, references, kwargs, expected = CASES[name]
    module = evaluate.load(str(METRIC_MODULES / name))
    result = module.compute(predictions=predictions, references=references, **kwargs)
    assert result is not None and set(result) == {name}
    assert math.isclose(result[name], float(expected), rel_tol=1e-9, abs_tol=1e-12)
    # a second load is served from evaluate's cache, and still scores the same
    again = evaluate.load(str(METRIC_MODULES / name)).compute(
        predictions=predictions, references=references, **kwargs
    )
    assert again == result


def test_classification_scorer_averages_as_before() -> None:
    """worker/metrics.py's scorer: binary averaging for two labels, macro for more."""
    names = ["accuracy", "f1", "precision", "recall", "matthews_correlation"]
    binary = build_scorer(names, 2)(BINARY_PRED, BINARY_TRUE)
    assert binary["f1"] == pytest.approx(f1_score(BINARY_TRUE, BINARY_PRED))
    many = build_scorer(names, 3)(LABELS_PRED, LABELS_TRUE)
    assert many["recall"] == pytest.approx(recall_score(LABELS_TRUE, LABELS_PRED, average="macro"))
    assert set(many) == set(names)
