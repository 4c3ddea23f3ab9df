"""API shapes of batch predictions."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.jobs.schemas import JobError, JobStatusName


class BatchPredictionCreate(BaseModel):
    """A file to label (and, when it has the label column, to evaluate the model on)."""

    model_config = ConfigDict(extra="forbid")

    file_id: str = Field(min_length=1, max_length=40)
    text_column: str | None = Field(
        default=None, min_length=1, description="Default: the model's training text column."
    )
    text_pair_column: str | None = Field(
        default=None, min_length=1, description="Default: the model's training pair column."
    )
    label_column: str | None = Field(
        default=None,
        min_length=1,
        description="Default: the model's training label column, used when the file has it. "
        "With labels, the job also evaluates the model on the file.",
    )
    precision: Literal["fp32", "bf16", "int8"] = Field(
        default="fp32", description="The number format of the forward passes."
    )


class BatchSpec(BaseModel):
    """What a batch prediction job runs (stored as the job's spec)."""

    model_id: str
    file_id: str
    text_column: str
    text_pair_column: str | None
    label_column: str | None
    precision: str
    metrics: list[str]


class BatchProgress(BaseModel):
    rows: int
    total_rows: int | None


class BatchPredictionRead(BaseModel):
    id: str
    status: JobStatusName
    model_id: str
    file_id: str
    spec: BatchSpec
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: BatchProgress
    attempts: int
    cancel_requested: bool
    error: JobError | None
    output_file_id: str | None = Field(
        description="The produced file: the input columns, `predicted_label` and a "
        "`score_<label>` column per label; read it at /v1/files/{id}/content."
    )
    result: dict[str, Any] | None = Field(
        description="With labels: the model's metrics on the file, per-label precision, "
        "recall, F1 and support, and the confusion matrix (rows: true labels)."
    )


class BatchPredictionList(BaseModel):
    data: list[BatchPredictionRead]
    next_cursor: str | None
