"""Plain-text tables and lines for the client commands."""

from collections.abc import Mapping, Sequence
from datetime import datetime

from app.batch.schemas import BatchPredictionRead
from app.files.schemas import FileRead
from app.jobs.schemas import CheckpointRead, FilesDataset, JobRead, MetricRow
from app.models.schemas import ModelRead, Prediction
from app.usage.schemas import UsageRead

EMPTY = "-"


def _numeric(cell: str) -> bool:
    if cell == EMPTY:
        return True
    try:
        float(cell.removesuffix("s"))
    except ValueError:
        return False
    return True


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns two spaces apart; numeric columns right-aligned."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    right = [bool(rows) and all(_numeric(row[i]) for row in rows) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if align else cell.ljust(width)
            for cell, width, align in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def number(value: float | None, digits: int = 4) -> str:
    return EMPTY if value is None else f"{value:.{digits}f}"


def when(value: datetime | None) -> str:
    """A time in the local zone, to the second."""
    return EMPTY if value is None else f"{value.astimezone():%Y-%m-%d %H:%M:%S}"


def scores(metrics: Mapping[str, float]) -> str:
    return "  ".join(f"{name} {value:.4f}" for name, value in metrics.items())


def metric_names(rows: Sequence[MetricRow]) -> list[str]:
    """Every metric of the rows, in order of first appearance."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row.metrics))
    return list(names)


def metrics_table(rows: Sequence[MetricRow]) -> str:
    """One line per epoch: epoch, step, train_loss, eval_loss, each metric, elapsed."""
    names = metric_names(rows)
    headers = ["epoch", "step", "train_loss", "eval_loss", *names, "elapsed"]
    cells = [
        [
            str(row.epoch),
            str(row.step),
            number(row.train_loss),
            number(row.eval_loss),
            *(number(row.metrics.get(name)) for name in names),
            f"{row.elapsed_seconds:.1f}s",
        ]
        for row in rows
    ]
    return table(headers, cells)


def metrics_line(
    epoch: int,
    step: int,
    train_loss: float | None,
    eval_loss: float | None,
    metrics: Mapping[str, float],
    elapsed_seconds: float | None,
    total_epochs: int | None = None,
) -> str:
    """One finished epoch on one line, as `jobs watch` prints it."""
    of = f"/{total_epochs}" if total_epochs else ""
    parts = [
        f"epoch {epoch}{of}",
        f"step {step}",
        f"train_loss {number(train_loss)}",
        f"eval_loss {number(eval_loss)}",
    ]
    if metrics:
        parts.append(scores(metrics))
    if elapsed_seconds is not None:
        parts.append(f"({elapsed_seconds:.1f} s)")
    return "  ".join(parts)


def progress(job: JobRead) -> str:
    """`epoch x/y, step a/b` (b once training has started)."""
    p = job.progress
    total_steps = EMPTY if p.total_steps is None else str(p.total_steps)
    return f"epoch {p.epoch:g}/{p.total_epochs:g}, step {p.step}/{total_steps}"


def fields(pairs: Sequence[tuple[str, str]]) -> str:
    """`name  value` lines with the values aligned."""
    width = max(len(name) for name, _ in pairs)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in pairs)


def file_summary(upload: FileRead) -> str:
    return fields(
        [
            ("id", upload.id),
            ("rows", str(upload.row_count)),
            ("columns", ", ".join(upload.columns)),
        ]
    )


def job_summary(job: JobRead) -> str:
    """Status, spec, progress, and the error or the model."""
    spec = job.spec
    hp = spec.hyperparameters
    if isinstance(spec.dataset, FilesDataset):
        data = f"files {spec.dataset.train_file_id} (train), {spec.dataset.validation_file_id} (validation)"
    else:
        config = f" {spec.dataset.config}" if spec.dataset.config else ""
        data = (
            f"hub {spec.dataset.name}{config} "
            f"({spec.dataset.train_split}, {spec.dataset.validation_split})"
        )
    columns = f"text {spec.text_column!r}"
    if spec.text_pair_column:
        columns += f", pair {spec.text_pair_column!r}"
    columns += f", label {spec.label_column!r}"
    status = job.status + (" (cancel requested)" if job.cancel_requested else "")
    pairs = [
        ("job", job.id),
        ("status", status),
        ("base model", spec.base_model),
        ("data", data),
        ("columns", columns),
        (
            "training",
            f"{hp.num_train_epochs} epochs, learning rate {hp.learning_rate:g}, "
            f"batch size {hp.per_device_train_batch_size}, seed {hp.seed}",
        ),
        ("metrics", ", ".join(spec.metric_names((job.data or {}).get("task")))),
        ("progress", progress(job)),
        ("attempts", str(job.attempts)),
        ("created", when(job.created_at)),
        ("started", when(job.started_at)),
        ("finished", when(job.finished_at)),
    ]
    if job.error is not None:
        pairs.append(("error", f"{job.error.code}: {job.error.message}"))
    if job.model_id is not None:
        pairs.append(("model", job.model_id))
    return fields(pairs)


def jobs_table(jobs: Sequence[JobRead]) -> str:
    rows = [
        [
            job.id,
            job.status,
            job.spec.base_model,
            f"{job.progress.epoch:g}/{job.progress.total_epochs:g}",
            when(job.created_at),
        ]
        for job in jobs
    ]
    return table(["id", "status", "base model", "epoch", "created"], rows)


def models_table(models: Sequence[ModelRead]) -> str:
    rows = [
        [
            model.id,
            model.job_id,
            model.base_model,
            ", ".join(model.labels),
            scores(model.metrics) or EMPTY,
        ]
        for model in models
    ]
    return table(["id", "job", "base model", "labels", "metrics"], rows)


def prediction(answer: Prediction) -> str:
    """The label (multi-label: the labels over the threshold; regression: the score), then
    each label's probability, most likely first."""
    if answer.score is not None:
        return fields([("score", f"{answer.score:.4f}")])
    ranked = sorted(answer.scores.items(), key=lambda item: item[1], reverse=True)
    head = (
        ("labels", ", ".join(answer.labels) or "(none over the threshold)")
        if answer.labels is not None
        else ("label", answer.label)
    )
    return fields([head, *((f"  {k}", f"{v:.4f}") for k, v in ranked)])


def size(value: int | None) -> str:
    """Bytes in the largest unit that keeps a number of at least 1 (1024-based)."""
    if value is None:
        return EMPTY
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{int(amount)} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def checkpoints_table(checkpoints: Sequence[CheckpointRead]) -> str:
    rows = [
        [
            f"{c.epoch}{' *' if c.is_best else ''}",
            str(c.step),
            size(c.size_bytes),
            number(c.eval_loss),
            scores(c.metrics) or EMPTY,
            c.model_id or EMPTY,
        ]
        for c in checkpoints
    ]
    return table(["epoch", "step", "size", "eval_loss", "metrics", "model"], rows)


def usage_table(usage: UsageRead) -> str:
    kinds = usage.bytes.model_dump()
    rows = [[kind, size(value), str(value)] for kind, value in kinds.items()]
    rows.append(["total", size(usage.total_bytes), str(usage.total_bytes)])
    limit = usage.limit_bytes
    rows.append(["limit", size(limit) if limit else "none", str(limit) if limit else EMPTY])
    return table(["kind", "size", "bytes"], rows)


def batch_summary(batch: BatchPredictionRead) -> str:
    """A batch prediction: status, rows, output, and the evaluation when there is one."""
    pairs = [
        ("batch prediction", batch.id),
        (
            "status",
            batch.status + (f" ({batch.error.code}: {batch.error.message})" if batch.error else ""),
        ),
        ("model", batch.model_id),
        ("file", batch.file_id),
        ("rows", f"{batch.progress.rows} / {batch.progress.total_rows}"),
        ("output file", batch.output_file_id or "—"),
    ]
    result = batch.result or {}
    if result.get("metrics"):
        pairs.append(("metrics", scores(result["metrics"])))
        pairs.append(("evaluated rows", str(result.get("evaluated_rows"))))
    text = fields(pairs)
    matrix = result.get("confusion_matrix")
    if matrix:
        labels = matrix["labels"]
        rows = [
            [label, *map(str, counts)]
            for label, counts in zip(labels, matrix["matrix"], strict=True)
        ]
        text += "\n\nconfusion matrix (rows: true, columns: predicted)\n" + table(
            ["", *labels], rows
        )
    return text
