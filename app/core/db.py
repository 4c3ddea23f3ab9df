"""Engine and session factory, shared by the API and the worker."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from app.core.config import get_settings


class Base(DeclarativeBase):
    """Declarative base of every table."""


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # The API and the worker are separate processes writing one file: WAL lets readers run
    # beside a writer, and busy_timeout makes a writer wait instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def build_engine(url: str) -> Engine:
    # Room for the API's request sessions (app.core.deps.REQUEST_SESSIONS), one connection per
    # worker thread (40) and the reaper, so that no thread ever waits for a connection.
    pool = {"pool_size": 10, "max_overflow": 55}
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **pool
        )
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


@lru_cache
def get_engine() -> Engine:
    settings = get_settings()
    settings.ensure_dirs()
    return build_engine(settings.sqlalchemy_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    import app.queue  # noqa: F401  (registers the outbox: messages sent after each commit)

    return sessionmaker(bind=get_engine(), expire_on_commit=False)


_WROTE = "tuneserve_wrote"


@event.listens_for(Session, "do_orm_execute")
def _note_write(state: Any) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_flush")
def _note_flush(session: Session, _context: Any) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _clear_write_note(session: Session) -> None:
    session.info.pop(_WROTE, None)


def has_writes(session: Session) -> bool:
    """Whether the session's transaction wrote anything (its commit then does real work)."""
    return bool(session.info.get(_WROTE))


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session committed on success and rolled back on error (for code outside requests)."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
