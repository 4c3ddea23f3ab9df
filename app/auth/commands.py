"""`tuneserve keys create|list|revoke`: manage API keys straight in the database."""

import os
from pathlib import Path

from app.auth import service
from app.core.config import Settings
from app.core.db import session_scope
from app.core.migrate import upgrade_to_head

FIRST_KEY_FILENAME = "first-api-key"


def _prepare(settings: Settings) -> None:
    settings.ensure_dirs()
    upgrade_to_head(settings.sqlalchemy_url)


def create_key(settings: Settings, tenant: str, name: str, quiet: bool) -> int:
    _prepare(settings)
    with session_scope() as session:
        issued = service.issue_key(session, tenant_name=tenant, key_name=name)
    if quiet:
        print(issued.secret)
    else:
        print(f"key {issued.key.id} for tenant '{issued.tenant.name}' ({issued.tenant.id}):")
        print(f"  {issued.secret}")
        print("It is shown only now; only its hash is stored.")
    return 0


def list_keys(settings: Settings, include_revoked: bool) -> int:
    _prepare(settings)
    with session_scope() as session:
        rows = service.list_keys(session, include_revoked)
        lines = [
            f"{key.id}  {tenant.name:<20}  {key.name:<20}  {key.prefix}…  "
            f"created {key.created_at:%Y-%m-%d %H:%M}"
            + (f"  revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "")
            for key, tenant in rows
        ]
    print("\n".join(lines) if lines else "no keys; make one with `tuneserve keys create`")
    return 0


def revoke_key(settings: Settings, key_id: str) -> int:
    _prepare(settings)
    with session_scope() as session:
        revoked = service.revoke_key(session, key_id)
    if not revoked:
        print(f"no active key with id '{key_id}' (see `tuneserve keys list --all`)")
        return 1
    print(f"revoked {key_id}; requests with it are refused from now on")
    return 0


def first_key_path(settings: Settings) -> Path:
    return settings.resolved_data_dir / FIRST_KEY_FILENAME


def ensure_first_key(settings: Settings) -> str | None:
    """Embedded mode: make, save (mode 0600) and return a key if none was ever made."""
    with session_scope() as session:
        issued = service.issue_first_key(session)
    if issued is None:
        return None
    path = first_key_path(settings)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(issued.secret + "\n")
    return issued.secret
