"""Task kinds: how labels are read, what the model's head is, and how it is scored.

Each kind is one class; `task_for` picks it (inferring the kind from the train split when the
spec leaves it out). A new kind (token classification, say) is one more class here.
"""

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from app.jobs.schemas import JobSpec
from worker.errors import JobFailure
from worker.metrics import build_scorer

SINGLE, REGRESSION, MULTI = (
    "single_label_classification",
    "regression",
    "multi_label_classification",
)


def _label_text(values: pd.Series) -> pd.Series:
    return values.astype(str).str.strip()


def _as_numbers(values: pd.Series) -> list[float] | None:
    try:
        numbers = [float(v) for v in _label_text(values)]
    except ValueError:
        return None
    return numbers if all(math.isfinite(n) for n in numbers) else None


def infer_task(spec: JobSpec, train: pd.DataFrame) -> str:
    """The task a spec names, else the one the train split's labels show unambiguously."""
    if spec.task is not None:
        return spec.task
    values = _label_text(train[spec.label_column])
    if spec.label_delimiter is not None or values.str.startswith("[").all():
        return MULTI
    numbers = _as_numbers(values)
    if numbers is not None and any(n != int(n) for n in numbers):
        return REGRESSION
    return SINGLE


# A label seen once in 10,000 rows would otherwise weigh 10,000: its few rows would swamp
# every step they are in.
MAX_POS_WEIGHT = 100.0


@dataclass
class Task:
    """Labels of one kind: their names, per-row targets, the head, and the scores."""

    kind: ClassVar[str]
    spec: JobSpec
    labels: list[str]  # the head's outputs, by id (display names, after label_names)
    raw: list[str] = field(default_factory=list)  # the values in the data, by id

    def targets(self, values: pd.Series, split: str) -> list[Any]:
        raise NotImplementedError

    def head(self) -> dict[str, Any]:
        """AutoModelForSequenceClassification keyword arguments."""
        id2label = dict(enumerate(self.labels))
        return {
            "num_labels": len(self.labels),
            "id2label": id2label,
            "label2id": {label: i for i, label in id2label.items()},
            "problem_type": self.kind,
        }

    def compute_metrics(self, names: list[str]) -> Callable[[Any], dict[str, float]]:
        raise NotImplementedError

    def balanced_loss(self, targets: list[Any]) -> Callable[..., Any]:
        """The Trainer's `compute_loss_func` for `class_weights: "balanced"`."""
        raise JobFailure(
            "invalid_spec",
            f"class_weights applies to classification; this job's task is {self.kind}. "
            "Leave class_weights out.",
        )


class SingleLabel(Task):
    kind = SINGLE

    def targets(self, values: pd.Series, split: str) -> list[Any]:
        ids = {raw: i for i, raw in enumerate(self.raw)}
        text = _label_text(values)
        unknown = sorted(set(text) - ids.keys())
        if unknown:
            raise JobFailure(
                "invalid_labels",
                f"The {split} split has labels that the train split lacks: {unknown[:5]}.",
            )
        return [ids[v] for v in text]

    def compute_metrics(self, names: list[str]) -> Callable[[Any], dict[str, float]]:
        score = build_scorer(names, len(self.labels))

        def compute(prediction: Any) -> dict[str, float]:
            logits, references = prediction
            return score(np.argmax(logits, axis=-1), references)

        return compute

    def balanced_loss(self, targets: list[Any]) -> Callable[..., Any]:
        """Cross-entropy weighted by inverse class frequency (scikit-learn's "balanced":
        n_samples / (n_classes * count)); a class absent from the train split weighs 1."""
        import torch

        counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=len(self.labels))
        weights = torch.tensor(
            [len(targets) / (len(counts) * c) if c else 1.0 for c in counts],
            dtype=torch.float32,
        )

        def loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
            logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
            logits = logits.view(-1, logits.shape[-1]).float()
            wanted = labels.view(-1).to(logits.device)
            w = weights.to(logits.device)
            summed = torch.nn.functional.cross_entropy(logits, wanted, weight=w, reduction="sum")
            # Normalised by the batch's summed weights, as a weighted mean would be; with
            # gradient accumulation the Trainer leaves that scaling to this function.
            mean = summed / w[wanted].sum()
            if num_items_in_batch:
                mean = mean * wanted.numel() / num_items_in_batch
            return mean

        return loss


class Regression(Task):
    kind = REGRESSION

    def targets(self, values: pd.Series, split: str) -> list[Any]:
        numbers = _as_numbers(values)
        if numbers is None:
            for row, value in enumerate(_label_text(values), start=1):
                try:
                    if not math.isfinite(float(value)):
                        raise ValueError
                except ValueError:
                    raise JobFailure(
                        "invalid_labels",
                        f"The {split} split's label column holds {value!r} in row {row}; "
                        "regression needs a number in every row.",
                    ) from None
        return [float(n) for n in numbers or []]

    def head(self) -> dict[str, Any]:
        return {**super().head(), "num_labels": 1}

    def compute_metrics(self, names: list[str]) -> Callable[[Any], dict[str, float]]:
        score = build_scorer(names, 1)

        def compute(prediction: Any) -> dict[str, float]:
            logits, references = prediction
            return score(np.asarray(logits).reshape(-1), np.asarray(references).reshape(-1))

        return compute


class MultiLabel(Task):
    kind = MULTI

    def targets(self, values: pd.Series, split: str) -> list[Any]:
        ids = {raw: i for i, raw in enumerate(self.raw)}
        rows = []
        for cell in _label_text(values):
            hot = [0.0] * len(self.raw)
            for raw in split_labels(cell, self.spec.label_delimiter):
                if raw not in ids:
                    raise JobFailure(
                        "invalid_labels",
                        f"The {split} split has labels that the train split lacks: {[raw]}.",
                    )
                hot[ids[raw]] = 1.0
            rows.append(hot)
        return rows

    def compute_metrics(self, names: list[str]) -> Callable[[Any], dict[str, float]]:
        from sklearn.metrics import f1_score

        score = build_scorer(names, len(self.labels))
        threshold = self.spec.threshold

        def compute(prediction: Any) -> dict[str, float]:
            logits, references = prediction
            probabilities = 1 / (1 + np.exp(-np.asarray(logits, dtype=np.float64)))
            predicted = (probabilities >= threshold).astype(int)
            truth = np.asarray(references).astype(int)
            results = score(predicted, truth)
            per_label = f1_score(truth, predicted, average=None, zero_division=0)
            for label, value in zip(self.labels, per_label, strict=True):
                results[f"f1/{label}"] = float(value)
            return results

        return compute

    def balanced_loss(self, targets: list[Any]) -> Callable[..., Any]:
        """Binary cross-entropy with each label's positives weighted by negatives / positives
        in the train split (`pos_weight`, capped at MAX_POS_WEIGHT): a rare label's misses
        cost as much as its many true negatives. A label absent from train weighs 1."""
        import torch

        hot = np.asarray(targets, dtype=np.float64).reshape(len(targets), len(self.labels))
        positives = hot.sum(axis=0)
        ratio = np.where(positives > 0, (len(hot) - positives) / np.maximum(positives, 1), 1.0)
        pos_weight = torch.tensor(np.clip(ratio, 1.0, MAX_POS_WEIGHT), dtype=torch.float32)

        def loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
            logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
            logits = logits.float()
            summed = torch.nn.functional.binary_cross_entropy_with_logits(
                logits,
                labels.to(logits.device).float(),
                pos_weight=pos_weight.to(logits.device),
                reduction="sum",
            )
            # The mean over every (row, label), over the accumulated batches when the Trainer
            # counts them (it leaves that scaling to this function).
            return summed / (num_items_in_batch or logits.numel())

        return loss


def split_labels(cell: str, delimiter: str | None) -> list[str]:
    """A multi-label cell's labels: a JSON array, or text split on the delimiter; empty: none."""
    cell = cell.strip()
    if not cell:
        return []
    if cell.startswith("["):
        try:
            values = json.loads(cell)
        except json.JSONDecodeError:
            values = None
        if isinstance(values, list):
            return [str(v).strip() for v in values if str(v).strip()]
    if delimiter is None:
        return [cell]
    return [part.strip() for part in cell.split(delimiter) if part.strip()]


def _ordered(values: set[str]) -> list[str]:
    try:
        return sorted(values, key=int)
    except ValueError:
        return sorted(values)


def task_for(spec: JobSpec, train: pd.DataFrame, max_labels: int) -> Task:
    """The job's task, with its label names read from the train split."""
    kind = infer_task(spec, train)
    values = _label_text(train[spec.label_column])
    names = spec.label_names or {}
    if kind == REGRESSION:
        return Regression(spec, labels=["score"], raw=["score"])
    if kind == MULTI:
        raw = _ordered(
            {label for cell in values for label in split_labels(cell, spec.label_delimiter)}
        )
        if not raw:
            raise JobFailure("invalid_labels", "No row of the train split has a label.")
    else:
        if (values == "").any():
            row = int((values == "").to_numpy().argmax())
            raise JobFailure("invalid_labels", f"The label column is empty in train row {row + 1}.")
        raw = _ordered(set(values))
        if len(raw) < 2:
            raise JobFailure(
                "invalid_labels",
                f"The label column has only one value ({raw[0]!r}); a classifier needs at least two.",
            )
    if len(raw) > max_labels:
        raise JobFailure(
            "invalid_labels",
            f"The label column has {len(raw)} distinct values (at most {max_labels} are "
            "allowed); is it really a label column?",
        )
    labels = [names.get(value, value) for value in raw]
    if len(set(labels)) != len(labels):
        raise JobFailure("invalid_labels", "label_names gives two labels the same name.")
    task_class = MultiLabel if kind == MULTI else SingleLabel
    return task_class(spec, labels=labels, raw=raw)
