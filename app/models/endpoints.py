"""/v1/models: trained models, and predictions from them."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from app.auth.deps import PrincipalDep, get_principal
from app.core.config import Settings
from app.core.db import session_scope
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import V1_ERRORS, ApiError
from app.core.precision import serving_precision
from app.models.deps import OwnedModelDep, find_model
from app.models.hf_inference import (
    HfLabelScore,
    HfTextClassificationRequest,
    check_function,
    ranked,
)
from app.models.repository import ModelRepository
from app.models.schemas import (
    ModelList,
    ModelRead,
    Prediction,
    PredictRequest,
    PredictResponse,
)
from app.models.service import model_read
from app.predict.service import PredictService
from app.tables import TrainedModel

router = APIRouter(
    prefix="/v1/models",
    tags=["models"],
    dependencies=[Depends(get_principal)],
    responses=V1_ERRORS,
)


@router.get("", response_model=ModelList)
def list_models(
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ModelList:
    records = ModelRepository(session).list_recent(principal.tenant_id, limit)
    return ModelList(data=[ModelRead.model_validate(r) for r in records])


@router.get("/{model_id}", response_model=ModelRead)
def get_model(session: SessionDep, model: OwnedModelDep) -> ModelRead:
    """The model, with the facts of its card (`card`: data, spec, per-epoch metrics)."""
    return model_read(session, model)


MODEL_ROWS_KEPT = 4096
_model_rows: dict[tuple[str, str], TrainedModel] = {}


async def _find_model(tenant_id: str, model_id: str) -> TrainedModel:
    """A trained model's row is written once and never changed, so a predict request reads it
    from the database (in a worker thread) only the first time; an unknown id raises NotFound
    each time and is not kept."""
    key = (tenant_id, model_id)
    record = _model_rows.get(key)
    if record is None:
        record = await run_in_threadpool(_read_model, tenant_id, model_id)
        if len(_model_rows) >= MODEL_ROWS_KEPT:
            _model_rows.pop(next(iter(_model_rows)))  # the oldest
        _model_rows[key] = record
    return record


def forget_model_row(tenant_id: str, model_id: str) -> None:
    """A deleted model's row is no longer served from memory."""
    _model_rows.pop((tenant_id, model_id), None)


def _read_model(tenant_id: str, model_id: str) -> TrainedModel:
    with session_scope() as session:  # closed before the forward pass, which needs none
        return find_model(session, tenant_id, model_id)


def get_predict_service(http_request: Request) -> PredictService:
    """The process's predict service, made in the lifespan (app/main.py)."""
    service: PredictService = http_request.app.state.predict
    return service


async def _client_gone(http_request: Request) -> None:
    """Return once the client has closed the connection (the request body is read already,
    so the next message is the disconnect; after the answer is sent it comes at once too)."""
    while (await http_request.receive())["type"] != "http.disconnect":
        pass


@router.post("/{model_id}/predict", response_model=PredictResponse)
async def predict(
    settings: SettingsDep,
    principal: PrincipalDep,
    model_id: str,
    request: PredictRequest,
    http_request: Request,
    service: Annotated[PredictService, Depends(get_predict_service)],
) -> PredictResponse:
    """Label each input; the answer has the predicted label and every label's probability.
    Concurrent requests for one model are labelled together, in shared forward passes; a
    model's full queue is answered 429 (the process's 503) with Retry-After."""
    _check_size(settings, request)
    record = await _find_model(principal.tenant_id, model_id)
    precision = serving_precision(request.precision or settings.predict_precision)
    predictions = await _predict(settings, record, request, precision, http_request, service)
    return PredictResponse(model_id=model_id, precision=precision, predictions=predictions)


@router.post("/{model_id}/hf-inference", response_model=list[list[HfLabelScore]])
async def hf_text_classification(
    settings: SettingsDep,
    principal: PrincipalDep,
    model_id: str,
    request: HfTextClassificationRequest,
    http_request: Request,
    service: Annotated[PredictService, Depends(get_predict_service)],
) -> list[list[HfLabelScore]]:
    """The predict route in Hugging Face's text-classification format, for
    `InferenceClient(base_url=<this URL>, api_key=KEY).text_classification(text, top_k=2)`:
    per input, `[{"label", "score"}, ...]` highest first. Same queues and limits as predict."""
    predict_request = request.predict_request()
    _check_size(settings, predict_request)
    record = await _find_model(principal.tenant_id, model_id)
    check_function(record.task, request.parameters.function_to_apply)
    precision = serving_precision(settings.predict_precision)
    predictions = await _predict(
        settings, record, predict_request, precision, http_request, service
    )
    return ranked(predictions, request.parameters.top_k)


def _check_size(settings: Settings, request: PredictRequest) -> None:
    if len(request.inputs) > settings.max_predict_inputs:
        raise ApiError(
            413,
            "too_many_inputs",
            f"At most {settings.max_predict_inputs} inputs per request; send smaller batches.",
        )


async def _predict(
    settings: Settings,
    record: TrainedModel,
    request: PredictRequest,
    precision: str,
    http_request: Request,
    service: PredictService,
) -> list[Prediction]:
    return await service.predict(
        record,
        request,
        settings.max_predict_text_chars,
        precision,
        client_gone=lambda: _client_gone(http_request),
    )
