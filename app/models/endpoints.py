"""/v1/models: trained models, and predictions from them."""

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from app.core.deps import SessionDep, SettingsDep
from app.core.errors import ApiError, NotFound
from app.models.repository import ModelRepository
from app.models.schemas import ModelList, ModelRead, PredictRequest, PredictResponse
from app.predict import service as predict_service
from app.tables import TrainedModel

router = APIRouter(prefix="/v1/models", tags=["models"])


def _get_model(session: SessionDep, model_id: str) -> TrainedModel:
    record = ModelRepository(session).get(model_id)
    if record is None:
        raise NotFound("model", model_id)
    return record


@router.get("", response_model=ModelList)
def list_models(
    session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> ModelList:
    records = ModelRepository(session).list_recent(limit)
    return ModelList(data=[ModelRead.model_validate(r) for r in records])


@router.get("/{model_id}", response_model=ModelRead)
def get_model(session: SessionDep, model_id: str) -> ModelRead:
    return ModelRead.model_validate(_get_model(session, model_id))


@router.post("/{model_id}/predict", response_model=PredictResponse)
async def predict(
    session: SessionDep, settings: SettingsDep, model_id: str, request: PredictRequest
) -> PredictResponse:
    """Label each input; the answer has the predicted label and every label's probability."""
    record = await run_in_threadpool(_get_model, session, model_id)
    if len(request.inputs) > settings.max_predict_inputs:
        raise ApiError(
            413,
            "too_many_inputs",
            f"At most {settings.max_predict_inputs} inputs per request; send smaller batches.",
        )
    session.close()  # the forward pass needs no database connection
    predictions = await run_in_threadpool(predict_service.predict, record, request)
    return PredictResponse(model_id=model_id, predictions=predictions)
