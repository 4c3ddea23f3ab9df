"""Queries on tenants and API keys."""

from collections.abc import Collection

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
        """Serialise writes that check a per-tenant limit, until the transaction ends.

        PostgreSQL locks the tenant's row. SQLite ignores FOR UPDATE, and pysqlite opens its
        transaction only at the first write, so two requests could both read, then both
        write: there this takes the database's write lock at once (BEGIN IMMEDIATE, waiting
        up to the busy timeout), and the reads that follow see every earlier write.
        """
        connection = self.session.connection()
        if connection.dialect.name != "sqlite":
            self.session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
            return
        # Already in a pysqlite transaction means a write was made: the write lock is held.
        if not getattr(connection.connection.dbapi_connection, "in_transaction", False):
            connection.exec_driver_sql("BEGIN IMMEDIATE")


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

    def active_ids(self, key_ids: Collection[str]) -> set[str]:
        """Those of `key_ids` that exist and are not revoked."""
        ids = list(key_ids)
        active: set[str] = set()
        for start in range(0, len(ids), 500):
            query = select(ApiKey.id).where(
                ApiKey.id.in_(ids[start : start + 500]), ApiKey.revoked_at.is_(None)
            )
            active.update(self.session.scalars(query))
        return active

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
