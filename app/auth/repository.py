"""Queries on tenants and API keys."""

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.tables import ApiKey, Tenant, utcnow


class TenantRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get_by_name(self, name: str) -> Tenant | None:
        return self.session.scalar(select(Tenant).where(Tenant.name == name))

    def add(self, tenant: Tenant) -> Tenant:
        self.session.add(tenant)
        self.session.flush()
        return tenant

    def lock(self, tenant_id: str) -> None:
        """Serialise writes that check a per-tenant limit (a no-op on SQLite, which locks all)."""
        self.session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())


class ApiKeyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        self.session.flush()
        return key

    def get_active_by_hash(self, secret_sha256: str) -> ApiKey | None:
        query = select(ApiKey).where(
            ApiKey.secret_sha256 == secret_sha256, ApiKey.revoked_at.is_(None)
        )
        return self.session.scalar(query)

    def list_with_tenants(self, include_revoked: bool) -> list[tuple[ApiKey, Tenant]]:
        query = (
            select(ApiKey, Tenant)
            .join(Tenant, Tenant.id == ApiKey.tenant_id)
            .order_by(Tenant.name, ApiKey.created_at)
        )
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        return [(key, tenant) for key, tenant in self.session.execute(query).tuples()]

    def count_all(self) -> int:
        return int(self.session.scalar(select(func.count()).select_from(ApiKey)) or 0)

    def revoke(self, key_id: str) -> bool:
        result = self.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        return int(getattr(result, "rowcount", 0)) == 1
