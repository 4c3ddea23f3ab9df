"""API keys for tests, issued straight into a database (migrated first)."""

from sqlalchemy.orm import Session

from app.auth.service import issue_key
from app.core.db import build_engine
from app.core.migrate import upgrade_to_head


def issue_test_key(database_url: str, tenant: str = "tests") -> str:
    """A new key of `tenant` (made if new); returns its secret."""
    upgrade_to_head(database_url)
    engine = build_engine(database_url)
    try:
        with Session(engine) as session:
            issued = issue_key(session, tenant_name=tenant, key_name="tests")
            session.commit()
            return issued.secret
    finally:
        engine.dispose()


def tenant_id_of(session: Session, tenant: str = "tests") -> str:
    """The id of a tenant, made (with a key) if new: for rows that tests insert directly."""
    return issue_key(session, tenant_name=tenant, key_name="tests").tenant.id
