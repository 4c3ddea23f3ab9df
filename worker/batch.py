"""A batch prediction: label every row of a file in chunks with the same forward pass as the
predict endpoint, write the output file, and evaluate the model when the file has labels.
Memory stays flat whatever the file's size: rows are read, labelled and written a chunk at a
time, and only the label ids are kept for the evaluation."""

import csv
import itertools
import json
import logging
import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from app.batch.schemas import BatchSpec
from app.core.config import Settings
from app.core.db import session_scope
from app.files.parsing import iter_records
from app.files.repository import FileRepository
from app.jobs.schemas import METRICS_OF_TASK
from app.models.repository import ModelRepository
from app.predict.loaded_model import LoadedModel
from app.storage import get_storage
from app.storage.keys import file_key, model_prefix
from worker.errors import JobFailure
from worker.lease import LeaseKeeper
from worker.metrics import build_scorer
from worker.tasks import MULTI, REGRESSION, SINGLE, split_labels

logger = logging.getLogger(__name__)
CHUNK_ROWS = 256  # rows labelled together (sorted by length, run in slices of 16)


@dataclass(frozen=True)
class BatchAttempt:
    tenant_id: str
    spec: BatchSpec
    folder: Path


@dataclass
class BatchResult:
    output: Path  # the staged output file
    filename: str
    format: str
    columns: list[str]
    row_count: int
    result: dict[str, Any]


def output_columns(
    columns: list[str], labels: list[str], predicted: str = "predicted_label"
) -> tuple[str, list[str]]:
    """The prediction's column and one score column per label, after the input's columns
    (renamed with a trailing underscore where a name is taken)."""

    def free(name: str) -> str:
        while name in columns:
            name += "_"
        return name

    label_column = free(predicted)
    return label_column, [free(f"score_{label}") for label in labels]


class OutputWriter:
    """Rows of the produced file, in the input's format."""

    def __init__(self, handle: TextIO, fmt: str, columns: list[str]) -> None:
        self.fmt = fmt
        self.columns = columns
        self.handle = handle
        if fmt != "jsonl":
            self.csv = csv.writer(
                handle,
                delimiter="\t" if fmt == "tsv" else ",",
                quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL,
                quotechar=None if fmt == "tsv" else '"',
                lineterminator="\n",
            )
            self.csv.writerow(columns)

    def write(self, values: list[str]) -> None:
        if self.fmt == "jsonl":
            record = dict(zip(self.columns, values, strict=True))
            self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            self.csv.writerow(values)


def _chunks(rows: Iterator[dict[str, str]], size: int) -> Iterator[list[dict[str, str]]]:
    while chunk := list(itertools.islice(rows, size)):
        yield chunk


def run_batch(settings: Settings, attempt: BatchAttempt, lease: LeaseKeeper) -> BatchResult:
    spec = attempt.spec
    with session_scope() as session:
        model = ModelRepository(session).get(attempt.tenant_id, spec.model_id)
        record = FileRepository(session).get(attempt.tenant_id, spec.file_id)
    if model is None:
        raise JobFailure("unknown_model", f"The model '{spec.model_id}' no longer exists.")
    if record is None:
        raise JobFailure("unknown_file", f"The file '{spec.file_id}' no longer exists.")
    storage = get_storage(settings)
    with storage.local_dir(model_prefix(model.id)) as folder:
        loaded = LoadedModel.load(folder, spec.precision)
    lease.check()
    labels = loaded.labels
    kind = model.task
    label_ids = {label: i for i, label in enumerate(labels)}
    predicted_column, score_columns = output_columns(
        record.columns,
        labels,
        "predicted_score"
        if kind == REGRESSION
        else ("predicted_labels" if kind == MULTI else "predicted_label"),
    )
    if kind == REGRESSION:
        score_columns = []  # the prediction is the score
    columns = [*record.columns, predicted_column, *score_columns]
    # Single-label references and guesses as compact int arrays: 8 bytes a row.
    truth: Any = array("i") if kind == SINGLE else []
    guesses: Any = array("i") if kind == SINGLE else []
    unknown = 0
    rows = 0
    threshold = model.threshold if model.threshold is not None else 0.5
    lease.progress.total_steps = record.row_count
    staged = attempt.folder / f"output.{record.format}"
    with (
        storage.local_file(file_key(record.id, record.format)) as source,
        staged.open("w", encoding="utf-8", newline="") as handle,
    ):
        writer = OutputWriter(handle, record.format, columns)
        for chunk in _chunks(
            iter_records(source, record.format, record.header, record.columns), CHUNK_ROWS
        ):
            lease.check()  # a cancel stops between chunks
            texts = [row.get(spec.text_column, "") for row in chunk]
            pairs = (
                [row.get(spec.text_pair_column, "") for row in chunk]
                if (spec.text_pair_column)
                else None
            )
            for row, (label, scores) in zip(chunk, loaded.predict(texts, pairs), strict=True):
                if kind == REGRESSION:
                    predicted: Any = scores[labels[0]]
                    shown = repr(predicted)
                elif kind == MULTI:
                    predicted = [scores[name] >= threshold for name in labels]
                    on = [name for name, hit in zip(labels, predicted, strict=True) if hit]
                    shown = json.dumps(on) if record.format == "jsonl" else ",".join(on)
                else:
                    predicted = label_ids[label]
                    shown = label
                writer.write(
                    [row.get(name, "") for name in record.columns]
                    + [shown]
                    + [repr(scores[name]) for name in labels if score_columns]
                )
                if spec.label_column is None:
                    continue
                reference = _reference(kind, row.get(spec.label_column, ""), label_ids)
                if reference is None:
                    unknown += 1
                else:
                    truth.append(reference)
                    guesses.append(predicted)
            rows += len(chunk)
            lease.progress.step = rows
            lease.progress.epoch = rows / max(record.row_count, 1)
    result: dict[str, Any] = {"rows": rows, "precision": spec.precision, "task": kind}
    if spec.label_column is not None:
        if kind == SINGLE:
            result.update(evaluation(spec.metrics, labels, list(truth), list(guesses)))
        else:
            result.update(other_evaluation(kind, spec.metrics, labels, truth, guesses))
        result["rows_with_unknown_labels"] = unknown
    stem = Path(record.filename).stem or record.id
    return BatchResult(
        output=staged,
        filename=f"{stem}-predictions.{record.format}",
        format=record.format,
        columns=columns,
        row_count=rows,
        result=result,
    )


def evaluation(
    metrics: list[str], labels: list[str], truth: list[int], guesses: list[int]
) -> dict[str, Any]:
    """The model's metrics on the labelled rows, per-label precision / recall / F1 / support,
    and the confusion matrix (rows: true labels, columns: predicted)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    if not truth:
        return {"evaluated_rows": 0}
    ids = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, guesses, labels=ids, zero_division=0
    )
    return {
        "evaluated_rows": len(truth),
        "metrics": _finite(build_scorer(metrics, len(labels))(guesses, truth)),
        "per_label": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": {
            "labels": labels,
            "matrix": confusion_matrix(truth, guesses, labels=ids).tolist(),
        },
    }


def _reference(kind: str, cell: str, label_ids: dict[str, int]) -> Any:
    """A row's true label in the prediction's form; None when it cannot be read."""
    cell = cell.strip()
    if kind == REGRESSION:
        try:
            value = float(cell)
        except ValueError:
            return None
        return value if math.isfinite(value) else None
    if kind == MULTI:
        names = split_labels(cell, ",")
        if any(name not in label_ids for name in names):
            return None
        return [name in names for name in label_ids]
    return label_ids.get(cell)


def other_evaluation(
    kind: str, metrics: list[str], labels: list[str], truth: list[Any], guesses: list[Any]
) -> dict[str, Any]:
    """Regression's or multi-label's metrics on the rows with a readable label."""
    import numpy as np
    from sklearn.metrics import f1_score

    if not truth:
        return {"evaluated_rows": 0}
    names = [m for m in metrics if m in METRICS_OF_TASK[kind]] or list(METRICS_OF_TASK[kind])
    score = build_scorer(names, len(labels))
    if kind == REGRESSION:
        return {
            "evaluated_rows": len(truth),
            "metrics": _finite(score(np.asarray(guesses, float), np.asarray(truth, float))),
        }
    predicted, reference = np.asarray(guesses, int), np.asarray(truth, int)
    per_label = f1_score(reference, predicted, average=None, zero_division=0)
    return {
        "evaluated_rows": len(truth),
        "metrics": _finite(score(predicted, reference)),
        "per_label": {
            label: {"f1": float(f1), "support": int(reference[:, i].sum())}
            for i, (label, f1) in enumerate(zip(labels, per_label, strict=True))
        },
    }


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics that are defined: a correlation of constant predictions is NaN, which JSON (and
    PostgreSQL's json type) cannot hold; it is left out, as in training's metrics rows."""
    return {name: value for name, value in metrics.items() if math.isfinite(value)}
