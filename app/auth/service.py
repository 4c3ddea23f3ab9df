"""API keys: issuing, revoking, and finding the tenant a request's key belongs to.

A key is `tsk_` + 48 random hex digits (192 bits). Only its SHA-256 is stored: a key that random
cannot be guessed from its hash, so a slow password hash would buy nothing and cost every request.
"""

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.auth.repository import ApiKeyRepository, TenantRepository
from app.tables import ApiKey, Tenant, new_id

KEY_PREFIX = "tsk_"
SHOWN_PREFIX_LENGTH = 12


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant, through one of its keys."""

    tenant_id: str
    key_id: str


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    tenant: Tenant
    secret: str  # shown once, never stored


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_key(session: Session, tenant_name: str, key_name: str) -> IssuedKey:
    """Create a key for a tenant, creating the tenant when it is new."""
    tenants = TenantRepository(session)
    tenant = tenants.get_by_name(tenant_name) or tenants.add(
        Tenant(id=new_id("ten"), name=tenant_name)
    )
    secret = KEY_PREFIX + secrets.token_hex(24)
    key = ApiKey(
        id=new_id("key"),
        tenant_id=tenant.id,
        name=key_name,
        prefix=secret[:SHOWN_PREFIX_LENGTH],
        secret_sha256=hash_secret(secret),
    )
    return IssuedKey(ApiKeyRepository(session).add(key), tenant, secret)


def authenticate(session: Session, secret: str) -> Principal | None:
    """The principal of an active key; None for unknown, malformed or revoked keys."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None
    key = ApiKeyRepository(session).get_active_by_hash(hash_secret(secret))
    if key is None:
        return None
    return Principal(tenant_id=key.tenant_id, key_id=key.id)


def issue_first_key(session: Session) -> IssuedKey | None:
    """A key for tenant "default" when no key was ever made; None otherwise."""
    if ApiKeyRepository(session).count_all() > 0:
        return None
    return issue_key(session, tenant_name="default", key_name="first key")


def list_keys(session: Session, include_revoked: bool) -> list[tuple[ApiKey, Tenant]]:
    return ApiKeyRepository(session).list_with_tenants(include_revoked)


def revoke_key(session: Session, key_id: str) -> bool:
    return ApiKeyRepository(session).revoke(key_id)
