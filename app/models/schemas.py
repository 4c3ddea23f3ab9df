"""API shapes of trained models and predictions."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class ModelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    job_id: str
    base_model: str
    labels: list[str]
    text_pair: bool
    metrics: dict[str, float]
    created_at: datetime


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


class Prediction(BaseModel):
    label: str
    scores: dict[str, float]


class PredictResponse(BaseModel):
    model_id: str
    predictions: list[Prediction]
