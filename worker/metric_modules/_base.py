"""The one body of the `evaluate` metric modules shipped in this folder (the Hub is not needed).

`evaluate.load(path)` copies a module's script into its cache and imports it from there; a
relative import would need the imported file copied beside each script, so each folder holds a
script of two lines that imports this file by its package name (the project is installed) and
builds its class: `Accuracy = metric_class("accuracy")`. A metric is a row of `METRICS`.

The classification metrics are adapted from the Hugging Face `evaluate-metric/*` modules
(Apache-2.0).
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import datasets
import evaluate
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

_CITATION = "Pedregosa et al., Scikit-learn: Machine Learning in Python, JMLR 12, 2011."
_LABELS = "predictions: predicted label ids; references: true label ids."
_AVERAGED = (
    f"{_LABELS} average: binary (default), macro, micro or weighted; pos_label: the positive label."
)
_VALUES = "predictions: predicted values; references: true values."
_LABEL_SETS = "predictions, references: rows of 0/1, one column per label (a label matrix)."

# What one prediction is: a label id, a number, or a row of 0/1 (one per label).
Inputs = Literal["label", "value", "label_set"]
_FEATURES: dict[str, Any] = {
    "label": datasets.Value("int32"),
    "value": datasets.Value("float64"),
    "label_set": datasets.Sequence(datasets.Value("int32")),
}


@dataclass(frozen=True)
class MetricSpec:
    description: str
    # score(references, predictions, **kwargs), as scikit-learn's functions take them
    score: Callable[..., Any]
    inputs: Inputs = "label"
    kwargs_description: str = _LABELS


def _statistic(test: Callable[..., Any]) -> Callable[..., float]:
    """A scipy test's statistic, without its p-value."""
    return lambda references, predictions: test(references, predictions).statistic


METRICS: dict[str, MetricSpec] = {
    "accuracy": MetricSpec("Accuracy: the proportion of correct predictions.", accuracy_score),
    "f1": MetricSpec(
        "F1: the harmonic mean of precision and recall.", f1_score, "label", _AVERAGED
    ),
    "precision": MetricSpec(
        "Precision: true positives over predicted positives.", precision_score, "label", _AVERAGED
    ),
    "recall": MetricSpec(
        "Recall: true positives over actual positives.", recall_score, "label", _AVERAGED
    ),
    "matthews_correlation": MetricSpec(
        "Matthews correlation coefficient, between -1 and +1.", matthews_corrcoef
    ),
    "pearson": MetricSpec(
        "Pearson correlation of predicted and true values, between -1 and +1.",
        _statistic(pearsonr),
        "value",
        _VALUES,
    ),
    "spearmanr": MetricSpec(
        "Spearman rank correlation of predicted and true values, between -1 and +1.",
        _statistic(spearmanr),
        "value",
        _VALUES,
    ),
    "mse": MetricSpec("Mean squared error.", mean_squared_error, "value", _VALUES),
    "mae": MetricSpec("Mean absolute error.", mean_absolute_error, "value", _VALUES),
    "f1_micro": MetricSpec(
        "F1 over every (row, label) decision together.",
        partial(f1_score, average="micro", zero_division=0),
        "label_set",
        _LABEL_SETS,
    ),
    "f1_macro": MetricSpec(
        "The mean over labels of each label's F1.",
        partial(f1_score, average="macro", zero_division=0),
        "label_set",
        _LABEL_SETS,
    ),
    "subset_accuracy": MetricSpec(
        "The proportion of rows whose every label is right.",
        accuracy_score,
        "label_set",
        _LABEL_SETS,
    ),
}


def metric_class(name: str) -> type[evaluate.Metric]:
    """The `evaluate.Metric` subclass of the metric `name`, answering `{name: score}`."""
    spec = METRICS[name]

    @evaluate.utils.file_utils.add_start_docstrings(spec.description, spec.kwargs_description)
    class SharedMetric(evaluate.Metric):
        def _info(self) -> evaluate.MetricInfo:
            feature = _FEATURES[spec.inputs]
            return evaluate.MetricInfo(
                description=spec.description,
                citation=_CITATION,
                inputs_description=spec.kwargs_description,
                features=datasets.Features({"predictions": feature, "references": feature}),
                reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
            )

        def _compute(self, predictions: Any, references: Any, **kwargs: Any) -> dict[str, float]:
            return {name: float(spec.score(references, predictions, **kwargs))}

    # evaluate names the module (and its cache folder) after the class
    SharedMetric.__name__ = SharedMetric.__qualname__ = name.title().replace("_", "")
    return SharedMetric
