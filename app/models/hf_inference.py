"""The Hugging Face text-classification wire format, so that `huggingface_hub.InferenceClient(
base_url=".../v1/models/{id}/hf-inference", api_key=KEY).text_classification(text, top_k=2)` works.

The client posts `{"inputs": text, "parameters": {"top_k", "function_to_apply"}}` to the base URL
and reads `[[{"label", "score"}, ...]]`: one list per input, highest score first.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.errors import ApiError
from app.models.schemas import Prediction, PredictRequest, TextPair

# The function each kind of head's scores come from (app/predict/loaded_model.py).
_OWN_FUNCTION = {"regression": "none", "multi_label_classification": "sigmoid"}


class HfParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_k: int | None = Field(
        default=None, ge=1, description="The k highest scores only. Default: every label."
    )
    function_to_apply: Literal["softmax", "sigmoid", "none"] | None = Field(
        default=None,
        description="Accepted when it is the model's own: softmax (single-label), sigmoid "
        "(multi-label), none (regression).",
    )


class HfTextClassificationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: str | TextPair | list[str | TextPair] = Field(
        description="A text, a {text, text_pair} object for pair models, or a list of them."
    )
    parameters: HfParameters = Field(default_factory=HfParameters)

    def predict_request(self) -> PredictRequest:
        """The same inputs as the predict route's request (its checks apply)."""
        inputs = self.inputs if isinstance(self.inputs, list) else [self.inputs]
        if not inputs:
            raise ApiError(422, "empty_input", "inputs is an empty list; send at least one text.")
        return PredictRequest(inputs=inputs)


class HfLabelScore(BaseModel):
    label: str
    score: float


def check_function(task: str, function: str | None) -> None:
    """Scores are computed by the model's own function only; another one is refused."""
    own = _OWN_FUNCTION.get(task, "softmax")
    if function is not None and function != own:
        raise ApiError(
            422,
            "unsupported_parameter",
            f"function_to_apply={function} is not supported: this model's scores come from "
            f"{own}. Leave function_to_apply out, or send {own}.",
        )


def ranked(predictions: list[Prediction], top_k: int | None) -> list[list[HfLabelScore]]:
    """Per input, its labels' scores highest first (ties in label order), the first `top_k`."""
    return [
        [
            HfLabelScore(label=label, score=score)
            for label, score in sorted(p.scores.items(), key=lambda item: -item[1])[:top_k]
        ]
        for p in predictions
    ]
