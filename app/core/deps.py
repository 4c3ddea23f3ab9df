"""FastAPI dependencies: one database session per request, and the settings."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings
from app.core.db import get_sessionmaker, has_writes
from app.queue import has_pending

# Request sessions open at once, per process. A session holds its pooled connection until
# the answer is sent, also while the request waits for a worker thread to serialize it; with
# more sessions than connections to spare, every thread could end up waiting for a connection
# (a deadlock until the pool timeout). The engine's pool has room for these sessions plus one
# connection per worker thread (40) and the reaper; further requests wait on the event loop.
REQUEST_SESSIONS = 20


async def get_session() -> AsyncIterator[Session]:
    """The request's session, and THE rule for transactions in the API: this dependency
    commits, once, after the endpoint returns and before the answer is sent (scope
    "function"); endpoints and services never commit. Training messages that the request
    queued with `app.queue.enqueue_after_commit` are sent right after that commit. An error
    rolls everything back, and nothing is sent.

    A read-only session is closed on the event loop; one that wrote commits in a worker
    thread, since a commit may wait for a lock (and the outbox sends its messages)."""
    session = get_sessionmaker()()
    try:
        yield session
        if has_writes(session) or has_pending(session):
            await run_in_threadpool(session.commit)
        else:
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[
    Session, Depends(get_session, scope="function", max_concurrency=REQUEST_SESSIONS)
]
SettingsDep = Annotated[Settings, Depends(get_settings)]
