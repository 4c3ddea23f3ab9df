"""The Hugging Face text-classification format: ranking, top_k, function_to_apply, inputs."""

import pytest

from app.core.errors import ApiError
from app.models.hf_inference import HfTextClassificationRequest, check_function, ranked
from app.models.schemas import Prediction, TextPair
from app.predict.admission import PREDICT_PATH


def test_ranked_highest_first_and_top_k() -> None:
    predictions = [
        Prediction(label="b", scores={"a": 0.2, "b": 0.5, "c": 0.3}),
        Prediction(label="a", scores={"a": 0.4, "b": 0.2, "c": 0.4}),
    ]
    assert [[e.label for e in row] for row in ranked(predictions, None)] == [
        ["b", "c", "a"],
        ["a", "c", "b"],  # a tie keeps the labels' order
    ]
    assert [[e.score for e in row] for row in ranked(predictions, 1)] == [[0.5], [0.4]]
    assert len(ranked(predictions, 10)[0]) == 3


@pytest.mark.parametrize(
    ("task", "own"),
    [
        ("single_label_classification", "softmax"),
        ("multi_label_classification", "sigmoid"),
        ("regression", "none"),
    ],
)
def test_only_the_models_own_function(task: str, own: str) -> None:
    check_function(task, None)
    check_function(task, own)
    for other in {"softmax", "sigmoid", "none"} - {own}:
        with pytest.raises(ApiError) as refused:
            check_function(task, other)
        assert (refused.value.status_code, refused.value.code) == (422, "unsupported_parameter")


def test_inputs_become_the_predict_routes() -> None:
    one = HfTextClassificationRequest.model_validate({"inputs": "good"})
    assert one.predict_request().inputs == ["good"]
    pair = HfTextClassificationRequest.model_validate(
        {"inputs": {"text": "a", "text_pair": "b"}, "parameters": {"top_k": 2}}
    )
    assert pair.predict_request().inputs == [TextPair(text="a", text_pair="b")]
    with pytest.raises(ApiError):
        HfTextClassificationRequest.model_validate({"inputs": []}).predict_request()


def test_a_full_queue_refuses_hf_requests_early_too() -> None:
    assert PREDICT_PATH.fullmatch("/v1/models/mdl_1/hf-inference")
    assert PREDICT_PATH.fullmatch("/v1/models/mdl_1/predict")
    assert not PREDICT_PATH.fullmatch("/v1/models/mdl_1/batch-predictions")
