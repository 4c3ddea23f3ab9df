"""End to end: Hugging Face's own `InferenceClient`, unchanged, against a model's hf-inference
route on the real API process, as a user calls it."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError

from tests.support.api_process import api_process
from tests.support.predict_tenants import register_model
from tests.support.service import Service

pytestmark = pytest.mark.e2e


@pytest.fixture
def api(tmp_path: Path, tiny_model_dir: Path) -> Iterator[Service]:
    url = f"sqlite:///{tmp_path / 'tuneserve.db'}"
    with api_process(tmp_path, url, tiny_model_dir, TUNESERVE_PREDICT_PRECISION="fp32") as api:
        yield api


@pytest.fixture(autouse=True)
def client_requests_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under HF_HUB_OFFLINE=1 the client refuses every request, to a local URL too; with
    base_url it asks the Hub nothing, so only the local API is reached."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def hf_url(api: Service, model_id: str) -> str:
    return f"{api.url}/v1/models/{model_id}/hf-inference"


def test_text_classification_with_the_hf_client(api: Service, tiny_model_dir: Path) -> None:
    settings = api.settings()
    model_id, key = register_model(
        settings.sqlalchemy_url, settings.models_dir, "hf", tiny_model_dir
    )
    client = InferenceClient(base_url=hf_url(api, model_id), api_key=key)

    top = client.text_classification("good movie", top_k=2)
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {key}"}) as http:
        predicted = http.post(
            f"/v1/models/{model_id}/predict", json={"inputs": ["good movie"]}
        ).json()["predictions"][0]
        # a list of inputs is answered a list per input, as Hugging Face's servers do
        many = http.post(
            f"/v1/models/{model_id}/hf-inference",
            json={"inputs": ["good movie", "bad plot"], "parameters": {"top_k": 1}},
        )
        assert many.status_code == 200 and [len(x) for x in many.json()] == [1, 1]
        empty = http.post(f"/v1/models/{model_id}/hf-inference", json={"inputs": []})
        assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_input"
        wrong = http.post(f"/v1/models/{model_id}/hf-inference", json={"text": "good"})
        assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "validation_error"

    assert len(top) == 2 and top[0].score >= top[1].score
    assert {e.label for e in top} == set(predicted["scores"])  # the folder's labels
    assert top[0].label == predicted["label"]
    for element in top:
        assert element.score == pytest.approx(predicted["scores"][element.label], abs=1e-6)
    assert [e.label for e in client.text_classification("good movie", top_k=1)] == [top[0].label]
    assert client.text_classification("good movie") == top  # every label by default
    assert client.text_classification("good movie", function_to_apply="softmax") == top

    with pytest.raises(HfHubHTTPError) as refused:
        client.text_classification("good movie", function_to_apply="sigmoid")
    assert refused.value.response.status_code == 422
    assert "unsupported_parameter" in str(refused.value)
    with pytest.raises(HfHubHTTPError) as unknown:
        InferenceClient(base_url=hf_url(api, "mdl_nope"), api_key=key).text_classification("x")
    assert unknown.value.response.status_code == 404
    assert "model_not_found" in str(unknown.value)
    with pytest.raises(HfHubHTTPError) as unauthorized:
        InferenceClient(base_url=hf_url(api, model_id), api_key="ts_bad").text_classification("x")
    assert unauthorized.value.response.status_code == 401


def test_pair_model_through_the_hf_client(api: Service, tiny_model_dir: Path) -> None:
    """`text_classification` is typed for a str, but sends any JSON value as `inputs`: a
    {text, text_pair} object reaches a pair model, as in Hugging Face's pipelines."""
    settings = api.settings()
    model_id, key = register_model(
        settings.sqlalchemy_url, settings.models_dir, "hf", tiny_model_dir, text_pair=True
    )
    client = InferenceClient(base_url=hf_url(api, model_id), api_key=key)
    pair = {"text": "good movie", "text_pair": "great plot"}
    ranked = client.text_classification(pair, top_k=2)  # type: ignore[arg-type]
    assert len(ranked) == 2 and ranked[0].score >= ranked[1].score
    assert sum(e.score for e in ranked) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(HfHubHTTPError) as single:
        client.text_classification("good movie")
    assert single.value.response.status_code == 422
    assert "text_pair_required" in str(single.value)
