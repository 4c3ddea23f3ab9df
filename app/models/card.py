"""Model cards: a `README.md` in each model folder, and the same facts as JSON.

`ModelFacts` is built from rows (the model, its job, the job's metrics, evaluations run since);
`write_model_card(folder, facts)` writes the card into a local folder (the worker, at the
commit point, before the folder is stored) and `store_model_card` rewrites it in storage when
facts change (a checkpoint registered, an evaluation run).
"""

import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.storage import Storage
from app.storage.keys import model_prefix
from app.tables import Job, JobMetric, TrainedModel

CARD_NAME = "README.md"


@dataclass(frozen=True)
class EpochFacts:
    epoch: int
    step: int
    train_loss: float | None
    eval_loss: float | None
    metrics: dict[str, float]


@dataclass(frozen=True)
class Evaluation:
    """A run of the model on labelled data after training (a batch prediction with labels)."""

    id: str
    file_id: str
    rows: int
    metrics: dict[str, float]
    created_at: str
    confusion_matrix: list[list[int]] | None = None


@dataclass(frozen=True)
class ModelFacts:
    model_id: str
    job_id: str | None
    epoch: int | None
    base_model: str
    labels: list[str]
    text_pair: bool
    metrics: dict[str, float]
    created_at: str
    dataset: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, str | None] = field(default_factory=dict)
    data: dict[str, Any] | None = None  # the job's summary: rows, labels, validation source
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    epochs: list[EpochFacts] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    evaluations: list[Evaluation] = field(default_factory=list)
    # Rows are true labels, columns predicted labels, in `labels` order; from the latest
    # evaluation that has one.
    confusion_matrix: list[list[int]] | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def facts_from_rows(
    model: TrainedModel,
    job: Job | None,
    metric_rows: Iterable[JobMetric] = (),
    evaluations: Iterable[Evaluation] = (),
) -> ModelFacts:
    spec: dict[str, Any] = job.spec if job is not None else {}
    evaluated = list(evaluations)
    confusion = next((e.confusion_matrix for e in reversed(evaluated) if e.confusion_matrix), None)
    return ModelFacts(
        model_id=model.id,
        job_id=model.job_id,
        epoch=model.epoch,
        base_model=model.base_model,
        labels=list(model.labels),
        text_pair=model.text_pair,
        metrics=dict(model.metrics),
        created_at=model.created_at.isoformat() if model.created_at else "",
        dataset=dict(spec.get("dataset") or {}),
        columns={
            "text": spec.get("text_column"),
            "text_pair": spec.get("text_pair_column"),
            "label": spec.get("label_column"),
        },
        data=job.summary if job is not None else None,
        hyperparameters=dict(spec.get("hyperparameters") or {}),
        epochs=[
            EpochFacts(row.epoch, row.step, row.train_loss, row.eval_loss, dict(row.metrics))
            for row in sorted(metric_rows, key=lambda row: row.epoch)
        ],
        best_epoch=job.best_epoch if job is not None else None,
        stopped_early=bool(job.stopped_early) if job is not None else False,
        evaluations=evaluated,
        confusion_matrix=confusion,
    )


def load_facts(
    session: Session, model: TrainedModel, evaluations: Iterable[Evaluation] = ()
) -> ModelFacts:
    """The model's facts from its rows; `evaluations` are those run since (batch predictions
    with labels), passed in by their owner."""
    job = session.get(Job, model.job_id) if model.job_id else None
    rows = session.scalars(select(JobMetric).where(JobMetric.job_id == model.job_id))
    return facts_from_rows(model, job, list(rows), evaluations)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def render_card(facts: ModelFacts) -> str:
    """The card's Markdown, with Hugging Face metadata on top."""
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags:",
        "- tuneserve",
        "- text-classification",
        "---",
        "",
        f"# {facts.model_id}",
        "",
        f"A text classifier fine-tuned by tuneserve from `{facts.base_model}`"
        + (" on text pairs." if facts.text_pair else "."),
        "",
        "| | |",
        "|---|---|",
        f"| base model | `{facts.base_model}` |",
        f"| job | `{facts.job_id}` |",
        f"| weights of epoch | {facts.epoch if facts.epoch is not None else '-'} |",
        f"| best epoch | {facts.best_epoch if facts.best_epoch is not None else '-'} |",
        f"| stopped early | {'yes' if facts.stopped_early else 'no'} |",
        f"| created | {facts.created_at} |",
        "",
        "## Labels",
        "",
        "| id | label |",
        "|---|---|",
        *(f"| {i} | {_cell(label)} |" for i, label in enumerate(facts.labels)),
        "",
        "## Data",
        "",
    ]
    lines += _data_lines(facts)
    lines += [
        "## Training spec and hyperparameters",
        "",
        "```json",
        json.dumps(
            {
                "base_model": facts.base_model,
                "dataset": facts.dataset,
                "columns": facts.columns,
                "hyperparameters": facts.hyperparameters,
            },
            indent=2,
            sort_keys=True,
        ),
        "```",
        "",
        "## Metrics per epoch",
        "",
    ]
    lines += _epoch_lines(facts)
    lines += ["## Evaluations", ""]
    if facts.evaluations:
        names = sorted({name for e in facts.evaluations for name in e.metrics})
        lines += [
            "| evaluation | file | rows | " + " | ".join(names) + " |",
            "|---|---|---|" + "---|" * len(names),
        ]
        for e in facts.evaluations:
            scores = " | ".join(_number(e.metrics.get(name)) for name in names)
            lines.append(f"| `{e.id}` | `{e.file_id}` | {e.rows} | {scores} |")
    else:
        lines.append("None run since training.")
    lines.append("")
    if facts.confusion_matrix:
        lines += [
            "## Confusion matrix",
            "",
            "Rows: true label; columns: predicted label.",
            "",
            "| | " + " | ".join(_cell(label) for label in facts.labels) + " |",
            "|---|" + "---|" * len(facts.labels),
        ]
        for label, counts in zip(facts.labels, facts.confusion_matrix, strict=False):
            lines.append(f"| **{_cell(label)}** | " + " | ".join(map(str, counts)) + " |")
        lines.append("")
    lines += _usage_lines(facts)
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _data_lines(facts: ModelFacts) -> list[str]:
    lines = []
    source = facts.dataset.get("source")
    if source == "files":
        lines.append(
            f"Uploaded files: train `{facts.dataset.get('train_file_id')}`, validation "
            f"`{facts.dataset.get('validation_file_id') or 'held out of the train file'}`."
        )
    elif source == "hub":
        lines.append(f"Hugging Face dataset `{facts.dataset.get('name')}`.")
    columns = ", ".join(f"{k}: `{v}`" for k, v in facts.columns.items() if v)
    if columns:
        lines.append(f"Columns: {columns}.")
    data = facts.data or {}
    if data:
        validation = data.get("validation") or {}
        where = (
            f"held out of the train file ({validation.get('ratio')})"
            if validation.get("source") == "held_out"
            else "a split of its own"
        )
        lines.append(
            f"{data.get('train_rows')} train rows, {data.get('validation_rows')} validation "
            f"rows; validation from {where}."
        )
        counts = data.get("train_label_counts") or {}
        if counts:
            lines.append(
                "Train rows per label: "
                + ", ".join(f"{_cell(k)}: {v}" for k, v in counts.items())
                + "."
            )
    return [*(f"{line}\n" for line in lines)] if lines else ["Not recorded.", ""]


def _epoch_lines(facts: ModelFacts) -> list[str]:
    if not facts.epochs:
        return ["Not recorded.", ""]
    names = sorted({name for row in facts.epochs for name in row.metrics})
    lines = [
        "| epoch | step | train_loss | eval_loss | " + " | ".join(names) + " |",
        "|---|---|---|---|" + "---|" * len(names),
    ]
    for row in facts.epochs:
        best = " (best)" if row.epoch == facts.best_epoch else ""
        scores = " | ".join(_number(row.metrics.get(name)) for name in names)
        lines.append(
            f"| {row.epoch}{best} | {row.step} | {_number(row.train_loss)} | "
            f"{_number(row.eval_loss)} | {scores} |"
        )
    return [*lines, ""]


def _usage_lines(facts: ModelFacts) -> list[str]:
    example = '{"text": "first", "text_pair": "second"}' if facts.text_pair else '"a great film"'
    return [
        "## How to load it",
        "",
        "Unpack the archive (`GET /v1/models/{id}/archive`, or `tuneserve models download "
        f"{facts.model_id}`), then, offline:",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline",
        "",
        f'model = AutoModelForSequenceClassification.from_pretrained("{facts.model_id}", '
        "use_safetensors=True)",
        f'tokenizer = AutoTokenizer.from_pretrained("{facts.model_id}")',
        'classifier = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None)',
        f"print(classifier({example}))",
        "```",
        "",
        "The weights are safetensors only; the label names are in `config.json` (`id2label`).",
    ]


def write_model_card(folder: Path, facts: ModelFacts) -> None:
    """Write `README.md` into a local model folder (renamed into place: the folder's files
    may be hard links shared with a kept checkpoint, never written through)."""
    target = folder / CARD_NAME
    temp = folder / f".card-{uuid.uuid4().hex[:8]}"
    temp.write_text(render_card(facts), encoding="utf-8")
    os.replace(temp, target)


def store_model_card(storage: Storage, facts: ModelFacts) -> None:
    """Rewrite the card of a stored model (after its facts changed)."""
    storage.put(model_prefix(facts.model_id) + CARD_NAME, render_card(facts).encode())
