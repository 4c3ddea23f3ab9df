"""FastAPI dependencies: one database session per request, and the settings."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings
from app.core.db import get_sessionmaker

# Request sessions open at once, per process. A session holds its pooled connection until
# the answer is sent, also while the request waits for a worker thread to serialize it; with
# more sessions than connections to spare, every thread could end up waiting for a connection
# (a deadlock until the pool timeout). The engine's pool has room for these sessions plus one
# connection per worker thread (40) and the reaper; further requests wait on the event loop.
REQUEST_SESSIONS = 20


async def get_session() -> AsyncIterator[Session]:
    """The request's session; opened and closed on the event loop, needing no thread (the
    endpoints commit their own writes)."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session, max_concurrency=REQUEST_SESSIONS)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
