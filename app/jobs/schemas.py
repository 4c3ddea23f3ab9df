"""Fine-tune job specs and the API shapes of jobs and their metrics."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

SUPPORTED_METRICS = ("accuracy", "f1", "precision", "recall", "matthews_correlation")
MetricName = Literal["accuracy", "f1", "precision", "recall", "matthews_correlation"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FilesDataset(StrictModel):
    """Uploaded files, one per split."""

    source: Literal["files"] = "files"
    train_file_id: str = Field(min_length=1, max_length=40)
    validation_file_id: str = Field(min_length=1, max_length=40)


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


def _default_metrics() -> list[MetricName]:
    return ["accuracy", "f1"]


class JobSpec(StrictModel):
    """What to fine-tune, on which data, how."""

    base_model: str = Field(min_length=1, max_length=200)
    dataset: DatasetSpec
    text_column: str = Field(min_length=1)
    text_pair_column: str | None = None
    label_column: str = Field(min_length=1)
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    metrics: list[MetricName] = Field(default_factory=_default_metrics, min_length=1)


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
