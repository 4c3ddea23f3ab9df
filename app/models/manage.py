"""/v1/models/{id}/archive and DELETE /v1/models/{id}: download a model's Hugging Face folder,
and delete a model."""

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import StreamingResponse

from app.auth.deps import get_principal
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import V1_ERRORS, ApiError
from app.models import service
from app.models.archive import archive_chunks, archive_members
from app.models.deps import OwnedModelDep
from app.models.endpoints import forget_model_row, get_predict_service
from app.predict.service import PredictService
from app.storage import after_commit, get_storage

router = APIRouter(
    prefix="/v1/models",
    tags=["models"],
    dependencies=[Depends(get_principal)],
    responses=V1_ERRORS,
)


@router.get(
    "/{model_id}/archive",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/gzip": {}}, "description": "a .tar.gz"}},
)
def model_archive(settings: SettingsDep, model: OwnedModelDep) -> StreamingResponse:
    """The model's folder as a `.tar.gz`: safetensors weights, config (with the label names),
    tokenizer and README.md card, never pickles; load it offline with
    `AutoModelForSequenceClassification.from_pretrained`. Streamed as it is made."""
    storage = get_storage(settings)
    members = archive_members(storage, model.id)
    if not members:
        raise ApiError(404, "model_not_found", f"No model with id '{model.id}'.")
    return StreamingResponse(
        archive_chunks(storage, model.id, members, model.created_at),
        media_type="application/gzip",
        headers={
            "Content-Disposition": f'attachment; filename="{model.id}.tar.gz"',
            "Cache-Control": "no-store",
        },
    )


@router.delete("/{model_id}", status_code=204, response_class=Response)
def delete_model(
    session: SessionDep,
    settings: SettingsDep,
    model: OwnedModelDep,
    predict: Annotated[PredictService, Depends(get_predict_service)],
) -> Response:
    """Delete a model and free its bytes; 409 `model_in_use` while a queued or running job
    starts from it or predicts with it. Predict requests already accepted finish; later ones
    answer 404. The job that trained it, and its kept checkpoints, stay."""
    service.delete_model(session, settings, model)
    tenant_id, model_id = model.tenant_id, model.id

    def forget() -> None:
        forget_model_row(tenant_id, model_id)
        predict.forget(model_id)

    after_commit(session, forget)
    return Response(status_code=204)
