"""A deleted model (PredictService.forget): the pass in flight and the inputs already queued
for it still answer; requests after the delete answer 404."""

import asyncio

import pytest

from app.core.errors import ApiError
from app.models.schemas import PredictRequest
from app.predict.service import GONE_KEPT
from app.tables import TrainedModel
from tests.unit.test_predict_state import Gate, hold, service_of


def record(model_id: str) -> TrainedModel:
    return TrainedModel(
        id=model_id,
        tenant_id="tenant-h",
        job_id="job_x",
        base_model="tiny",
        labels=["a"],
        metrics={},
    )


def test_requests_in_flight_finish_and_later_ones_answer_404() -> None:
    passes: list[tuple[str, list[str]]] = []
    gate = Gate()
    service = service_of(passes, gate)
    model = record("mdl_gone")

    async def scenario() -> None:
        running = await hold(service, gate, key="mdl_gone:fp32")  # a pass inside the model
        queued = asyncio.ensure_future(
            service.predict(model, PredictRequest(inputs=["queued"]), 100, "fp32")
        )
        await asyncio.sleep(0.05)
        service.forget("mdl_gone")
        with pytest.raises(ApiError) as refused:
            await service.predict(model, PredictRequest(inputs=["later"]), 100, "fp32")
        assert refused.value.status_code == 404
        gate.release.set()
        assert (await running)[0][0] == "mdl_gone:fp32"
        assert (await queued)[0].label == "mdl_gone:fp32"

    try:
        asyncio.run(scenario())
    finally:
        service.close()
    assert [texts for _, texts in passes] == [["hold"], ["queued"]]


def test_deleted_ids_are_remembered_up_to_a_bound() -> None:
    """`_gone` grew by one id per delete for the life of the process."""
    gate = Gate()
    service = service_of([], gate)
    try:
        service.forget("mdl_0")
        for i in range(1, GONE_KEPT + 10):
            service.forget(f"mdl_{i}")
            if i == GONE_KEPT // 2:
                service.forget("mdl_0")  # deleted again (another process): remembered anew
        assert len(service._gone) == GONE_KEPT
        assert "mdl_1" not in service._gone and "mdl_0" in service._gone
        with pytest.raises(ApiError) as refused:
            asyncio.run(service.predict(record("mdl_0"), PredictRequest(inputs=["x"]), 100, "fp32"))
        assert refused.value.status_code == 404
    finally:
        service.close()
