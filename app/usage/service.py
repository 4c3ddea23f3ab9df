"""A tenant's stored bytes, and the quota that uploads and new jobs are checked against."""

from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import ApiError
from app.usage.repository import UsageRepository
from app.usage.schemas import UsageBytes, UsageRead


def tenant_usage(session: Session, settings: Settings, tenant_id: str) -> UsageRead:
    kinds = UsageRepository(session).bytes_by_kind(tenant_id)
    limit = settings.max_storage_bytes_per_tenant
    return UsageRead(
        bytes=UsageBytes(**kinds), total_bytes=sum(kinds.values()), limit_bytes=limit or None
    )


def check_storage_quota(
    session: Session, settings: Settings, tenant_id: str, adding: int, status: int
) -> None:
    """Refuse (`status`, `storage_quota_exceeded`) when the tenant's stored bytes plus `adding`
    exceed TUNESERVE_MAX_STORAGE_BYTES_PER_TENANT (0: unlimited), or, for a job (`adding` 0:
    its size is not known yet), when nothing is left. A check, not a reservation: concurrent
    requests, and the jobs that pass, may go over by what they store."""
    limit = settings.max_storage_bytes_per_tenant
    if not limit:
        return
    used = sum(UsageRepository(session).bytes_by_kind(tenant_id).values())
    if (used + adding > limit) if adding else (used >= limit):
        raise ApiError(
            status,
            "storage_quota_exceeded",
            f"This tenant stores {used} bytes"
            + (f" and this upload adds {adding}" if adding else "")
            + f"; the limit is {limit}. Delete files, models or finished jobs "
            "(see GET /v1/usage) and try again.",
        )
