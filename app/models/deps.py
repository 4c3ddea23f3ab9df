"""The owned-model dependency: every route under /v1/models/{model_id} loads the model
through it."""

from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from app.auth.deps import PrincipalDep
from app.core.deps import SessionDep
from app.core.errors import NotFound
from app.models.repository import ModelRepository
from app.tables import TrainedModel


def find_model(session: Session, tenant_id: str, model_id: str) -> TrainedModel:
    """A tenant's model; another tenant's id raises NotFound, as if it did not exist."""
    record = ModelRepository(session).get(tenant_id, model_id)
    if record is None:
        raise NotFound("model", model_id)
    return record


def get_owned_model(session: SessionDep, principal: PrincipalDep, model_id: str) -> TrainedModel:
    """The caller's model (the dependency of every /v1/models/{model_id} route)."""
    return find_model(session, principal.tenant_id, model_id)


OwnedModelDep = Annotated[TrainedModel, Depends(get_owned_model)]
