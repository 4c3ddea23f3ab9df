"""Fine-tune job specs and the API shapes of jobs and their metrics."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CLASSIFICATION_METRICS = ("accuracy", "f1", "precision", "recall", "matthews_correlation")
REGRESSION_METRICS = ("pearson", "spearmanr", "mse", "mae")
MULTI_LABEL_METRICS = ("f1_micro", "f1_macro", "subset_accuracy")
SUPPORTED_METRICS = CLASSIFICATION_METRICS + REGRESSION_METRICS + MULTI_LABEL_METRICS
MetricName = Literal[
    "accuracy",
    "f1",
    "precision",
    "recall",
    "matthews_correlation",
    "pearson",
    "spearmanr",
    "mse",
    "mae",
    "f1_micro",
    "f1_macro",
    "subset_accuracy",
]
TaskName = Literal["single_label_classification", "regression", "multi_label_classification"]
METRICS_OF_TASK: dict[str, tuple[str, ...]] = {
    "single_label_classification": CLASSIFICATION_METRICS,
    "regression": REGRESSION_METRICS,
    "multi_label_classification": MULTI_LABEL_METRICS,
}
DEFAULT_METRICS: dict[str, list[str]] = {
    "single_label_classification": ["accuracy", "f1"],
    "regression": ["pearson", "spearmanr", "mse", "mae"],
    "multi_label_classification": ["f1_micro", "f1_macro", "subset_accuracy"],
}
LOWER_IS_BETTER = ("eval_loss", "mse", "mae")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FilesDataset(StrictModel):
    """Uploaded files, one per split."""

    source: Literal["files"] = "files"
    train_file_id: str = Field(min_length=1, max_length=40)
    validation_file_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=40,
        description="Left out: a seeded, stratified `validation_split_ratio` of the train "
        "file is held out for evaluation (the same rows on every attempt).",
    )
    validation_split_ratio: float = Field(default=0.1, gt=0, le=0.5)


SPLIT_PATTERN = r"^[A-Za-z0-9_][\w.\-]*(\[[\w:%\-]*\])?$"


class HubDataset(StrictModel):
    """A Hugging Face Hub dataset, `owner/name` (needs network access or a filled local cache)."""

    source: Literal["hub"]
    name: str = Field(
        min_length=3,
        max_length=200,
        pattern=r"^[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9][\w.\-]{0,95}$",
        description="owner/name on the Hub, e.g. nyu-mll/glue",
    )
    config: str | None = Field(default=None, max_length=200, pattern=r"^[\w.\-]+$")
    train_split: str = Field(default="train", max_length=100, pattern=SPLIT_PATTERN)
    validation_split: str = Field(default="validation", max_length=100, pattern=SPLIT_PATTERN)


DatasetSpec = Annotated[FilesDataset | HubDataset, Field(discriminator="source")]


class Hyperparameters(StrictModel):
    """Trainer hyperparameters; the defaults are the Hugging Face course's."""

    num_train_epochs: int = Field(default=3, gt=0, le=100)
    learning_rate: float = Field(default=5e-5, gt=0, le=1)
    per_device_train_batch_size: int = Field(default=8, gt=0, le=4096)
    per_device_eval_batch_size: int = Field(default=8, gt=0, le=4096)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    seed: int = Field(default=42, ge=0, le=2**32 - 1)
    max_length: int | None = Field(default=None, gt=0, le=8192)
    gradient_accumulation_steps: int = Field(default=1, gt=0, le=1024)
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    group_by_length: bool = Field(
        default=True,
        description="Batch examples of similar length together: less padding, faster epochs; "
        "false gives the course recipe's random batches.",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto",
        description="auto: bf16 autocast where the hardware computes bf16 natively (recent "
        "GPUs, CPUs with AVX512-BF16 or AMX), else fp32. fp32 is the course recipe.",
    )
    metric_for_best_model: str | None = Field(
        default=None,
        max_length=40,
        description="The model registered is the epoch best by this metric (one of the "
        "job's metrics, or eval_loss); default: the first requested metric. Ties keep the "
        "earlier epoch.",
    )
    greater_is_better: bool | None = Field(
        default=None, description="Default: false for eval_loss, true for the others."
    )
    early_stopping_patience: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Stop after this many evaluations without improvement (off by default).",
    )
    early_stopping_threshold: float = Field(
        default=0.0, ge=0, description="How much better counts as an improvement."
    )
    class_weights: Literal["balanced"] | None = Field(
        default=None,
        description="balanced: weigh each class's loss by inverse class frequency (for "
        "imbalanced data; multi-label: each label's positives by its negatives / positives, "
        "at most 100); off by default.",
    )
    processes: int | None = Field(
        default=None,
        ge=1,
        le=8,
        description="Train on this many processes at once (DDP: one per GPU, or gloo "
        "processes on a CPU); left out: the worker's setting. The batch stays "
        "per_device_train_batch_size in all, split evenly between the processes, so it must "
        "divide by this number. A GPU worker with fewer GPUs fails the job (not_enough_devices).",
    )

    @model_validator(mode="after")
    def _batch_splits(self) -> "Hyperparameters":
        if self.processes and self.per_device_train_batch_size % self.processes:
            raise ValueError(
                f"per_device_train_batch_size {self.per_device_train_batch_size} does not "
                f"split evenly between {self.processes} processes"
            )
        return self


class JobSpec(StrictModel):
    """What to fine-tune, on which data, how."""

    base_model: str = Field(min_length=1, max_length=200)
    dataset: DatasetSpec
    text_column: str = Field(min_length=1)
    text_pair_column: str | None = None
    label_column: str = Field(min_length=1)
    task: TaskName | None = Field(
        default=None,
        description="Left out: inferred from the train split where unambiguous (numbers with "
        "a fractional part: regression; JSON arrays, or `label_delimiter` given: multi-label; "
        "else single-label), and recorded on the job's `data.task`.",
    )
    label_delimiter: str | None = Field(
        default=None,
        min_length=1,
        max_length=5,
        description='Multi-label: the separator of a label cell ("," for "4,27").',
    )
    threshold: float = Field(
        default=0.5, gt=0, lt=1, description="Multi-label: a label is on at this probability."
    )
    label_names: dict[str, str] | None = Field(
        default=None,
        description='Names for label values, e.g. {"0": "not_equivalent", "1": "equivalent"}: '
        "the model's id2label and its predictions carry them.",
    )
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    metrics: list[MetricName] | None = Field(
        default=None,
        min_length=1,
        description="Default: accuracy, f1 (single-label); pearson, spearmanr, mse, mae "
        "(regression); f1_micro, f1_macro, subset_accuracy (multi-label).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "JobSpec":
        if self.task is not None and self.metrics is not None:
            wrong = [m for m in self.metrics if m not in METRICS_OF_TASK[self.task]]
            if wrong:
                raise ValueError(
                    f"metrics {wrong} do not apply to {self.task}; use "
                    f"{', '.join(METRICS_OF_TASK[self.task])}"
                )
        name = self.hyperparameters.metric_for_best_model
        # A task still to be inferred from the data may have any task's default metrics; the
        # worker checks the name again once it knows the task.
        allowed = (
            self.metric_names()
            if self.metrics is not None or self.implied_task() is not None
            else list(dict.fromkeys(m for names in DEFAULT_METRICS.values() for m in names))
        )
        if name is not None and name != "eval_loss" and name not in allowed:
            raise ValueError(
                f"hyperparameters.metric_for_best_model '{name}' must be eval_loss or one of "
                f"the job's metrics ({', '.join(allowed)})"
            )
        if self.hyperparameters.class_weights and self.task == "regression":
            raise ValueError("class_weights applies to classification tasks, not regression")
        return self

    def implied_task(self) -> str | None:
        """The task the spec alone settles: named, or multi-label by its `label_delimiter`."""
        if self.task is not None:
            return self.task
        return "multi_label_classification" if self.label_delimiter is not None else None

    def metric_names(self, task: str | None = None) -> list[str]:
        """The requested metrics, or the task's defaults."""
        if self.metrics is not None:
            return list(self.metrics)
        return DEFAULT_METRICS[task or self.implied_task() or _task_of_metrics(self.metrics)]

    def best_metric(self, task: str | None = None) -> tuple[str, bool]:
        """The metric that picks the best epoch, and whether greater is better."""
        name = self.hyperparameters.metric_for_best_model or self.metric_names(task)[0]
        greater = self.hyperparameters.greater_is_better
        return name, (name not in LOWER_IS_BETTER) if greater is None else greater


def _task_of_metrics(metrics: list[str] | None) -> str:
    for task, names in METRICS_OF_TASK.items():
        if metrics and all(m in names for m in metrics):
            return task
    return "single_label_classification"


JobStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobError(BaseModel):
    code: str
    message: str


class JobProgress(BaseModel):
    epoch: float
    total_epochs: float
    step: int
    total_steps: int | None


class JobRead(BaseModel):
    id: str
    status: JobStatusName
    spec: JobSpec
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: JobProgress
    attempts: int
    cancel_requested: bool
    error: JobError | None
    model_id: str | None
    best_epoch: int | None = Field(
        default=None,
        description="The epoch whose weights the model has (best by the chosen metric).",
    )
    stopped_early: bool = Field(
        default=False, description="Early stopping ended training before its end."
    )
    data: dict[str, Any] | None = Field(
        default=None,
        description="What the worker loaded: rows per split, labels, and where validation "
        "came from (a file, or rows held out of the train file).",
    )


class JobList(BaseModel):
    data: list[JobRead]
    next_cursor: str | None


class MetricRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    epoch: int
    step: int
    train_loss: float | None
    eval_loss: float | None
    metrics: dict[str, float]
    elapsed_seconds: float
    created_at: datetime


class MetricList(BaseModel):
    data: list[MetricRow]


class CheckpointRead(BaseModel):
    epoch: int
    step: int
    size_bytes: int
    eval_loss: float | None
    metrics: dict[str, float]
    is_best: bool
    model_id: str | None = Field(description="The model registered from this epoch, if any.")
    created_at: datetime


class CheckpointList(BaseModel):
    data: list[CheckpointRead]
