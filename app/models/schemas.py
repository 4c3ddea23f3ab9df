"""API shapes of trained models and predictions."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.precision import ServingPrecision


class ModelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    job_id: str
    epoch: int | None = Field(
        default=None,
        description="The epoch of the job whose weights these are (the best one, for the "
        "job's own model); its metrics are that epoch's.",
    )
    base_model: str
    labels: list[str]
    text_pair: bool
    metrics: dict[str, float]
    created_at: datetime
    size_bytes: int | None = Field(
        default=None, description="Bytes of the stored folder (null for older models)."
    )
    card: "ModelCard | None" = Field(
        default=None,
        description="The facts of the model's card (its README.md): data, spec, per-epoch "
        "metrics, evaluations. Only on GET /v1/models/{id}.",
    )


class EpochCard(BaseModel):
    epoch: int
    step: int
    train_loss: float | None
    eval_loss: float | None
    metrics: dict[str, float]


class EvaluationCard(BaseModel):
    id: str
    file_id: str
    rows: int
    metrics: dict[str, float]
    created_at: str
    confusion_matrix: list[list[int]] | None = None


class ModelCard(BaseModel):
    base_model: str
    labels: list[str]
    text_pair: bool
    dataset: dict[str, Any] = Field(description="The training job's dataset spec.")
    columns: dict[str, str | None]
    data: dict[str, Any] | None = Field(
        description="Train and validation rows, labels, where validation came from."
    )
    hyperparameters: dict[str, Any]
    epochs: list[EpochCard]
    best_epoch: int | None
    stopped_early: bool
    evaluations: list[EvaluationCard]
    confusion_matrix: list[list[int]] | None = Field(
        description="Rows: true labels, columns: predicted, in `labels` order; from the "
        "latest evaluation that has one."
    )


class ModelList(BaseModel):
    data: list[ModelRead]


class TextPair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    text_pair: str | None = Field(default=None, min_length=1)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[str | TextPair] = Field(
        min_length=1, description="Texts, or {text, text_pair} objects for pair models."
    )
    precision: ServingPrecision | None = Field(
        default=None,
        description="The model's number format for this request: fp32, bf16, int8 (dynamic "
        "quantization of the linear layers) or auto (bf16 where the CPU or GPU computes it "
        "natively, else fp32). Default: the server's TUNESERVE_PREDICT_PRECISION (auto).",
    )


class Prediction(BaseModel):
    label: str = Field(description="The most likely label (regression: 'score').")
    scores: dict[str, float] = Field(
        description="Each label's probability (multi-label: independent sigmoids); "
        "regression: {'score': value}."
    )
    score: float | None = Field(default=None, description="Regression: the predicted value.")
    labels: list[str] | None = Field(
        default=None, description="Multi-label: every label at or above the model's threshold."
    )

    @classmethod
    def of(
        cls, task: str, threshold: float | None, label: str, scores: dict[str, float]
    ) -> "Prediction":
        if task == "regression":
            return cls(label=label, scores=scores, score=next(iter(scores.values())))
        if task == "multi_label_classification":
            cut = 0.5 if threshold is None else threshold
            on = [name for name, p in sorted(scores.items(), key=lambda kv: -kv[1]) if p >= cut]
            return cls(label=label, scores=scores, labels=on)
        return cls(label=label, scores=scores)


class PredictResponse(BaseModel):
    model_id: str
    precision: str = Field(description="The number format the model ran in.")
    predictions: list[Prediction]
