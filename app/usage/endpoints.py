"""/v1/usage: the tenant's stored bytes by kind."""

from fastapi import APIRouter, Depends

from app.auth.deps import PrincipalDep, get_principal
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import V1_ERRORS
from app.usage.schemas import UsageRead
from app.usage.service import tenant_usage

router = APIRouter(
    prefix="/v1/usage", tags=["usage"], dependencies=[Depends(get_principal)], responses=V1_ERRORS
)


@router.get("", response_model=UsageRead)
def get_usage(session: SessionDep, settings: SettingsDep, principal: PrincipalDep) -> UsageRead:
    """Bytes stored by this tenant: uploads, models, kept checkpoints, produced files; summed
    from the sizes recorded when each was stored."""
    return tenant_usage(session, settings, principal.tenant_id)
