"""Reading a job's event log: pages, and the live stream fed from the database."""

from collections.abc import AsyncIterator, Collection

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from app.auth.repository import ApiKeyRepository
from app.core.db import session_scope
from app.core.errors import ApiError
from app.events.hub import Watcher
from app.events.repository import EventRepository
from app.events.schemas import TERMINAL_EVENTS, EventList, EventRead
from app.jobs.service import get_job

POLL_SECONDS = 0.5
PAGE = 500


def parse_position(value: str | None, what: str) -> int:
    """A cursor or Last-Event-ID is the `seq` of the last event seen."""
    if value is None or value == "":
        return 0
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        raise ApiError(400, "invalid_cursor", f"The {what} must be an event's seq, like '12'.")
    return int(value)


def read_page(session: Session, job_id: str, after_seq: int, limit: int) -> list[EventRead]:
    rows = EventRepository(session).list_after(job_id, after_seq, limit)
    return [EventRead.model_validate(row) for row in rows]


def read_after(job_id: str, after_seq: int, limit: int = PAGE) -> list[EventRead]:
    """A page of the log after `after_seq`, in a session of its own (run in a worker thread):
    a stream holds no connection between reads."""
    with session_scope() as session:
        return read_page(session, job_id, after_seq, limit)


def active_key_ids(key_ids: Collection[str]) -> set[str]:
    """Those of `key_ids` not revoked (open streams re-check their keys); own session."""
    with session_scope() as session:
        return ApiKeyRepository(session).active_ids(key_ids)


def check_job(tenant_id: str, job_id: str) -> None:
    """404 unless the tenant owns the job; in a session of its own (run in a worker thread)."""
    with session_scope() as session:
        get_job(session, tenant_id, job_id)


def list_events(session: Session, job_id: str, after_seq: int, limit: int) -> EventList:
    events = read_page(session, job_id, after_seq, limit + 1)
    page = events[:limit]
    next_cursor = str(page[-1].seq) if len(events) > limit else None
    return EventList(data=page, next_cursor=next_cursor)


async def follow(watcher: Watcher, job_id: str, after_seq: int) -> AsyncIterator[EventRead]:
    """Every event after `after_seq`, then new ones as any process writes them, until the
    job's final event or until the watcher ends (the client then reconnects with
    Last-Event-ID). The log is read up to its end, then the job's shared poller feeds it."""
    position = after_seq
    read, page = watcher.hub.read, watcher.hub.page_size
    attached = False
    while True:
        events = await run_in_threadpool(read, job_id, position, page)
        for event in events:
            yield event
            position = event.seq
            if event.type in TERMINAL_EVENTS:
                return
        if watcher.ended is not None:
            return
        if len(events) >= page:
            continue
        if attached:
            break
        # Events up to the poller's position were offered before this watcher joined: when
        # the poller is ahead, read up to it once more (what it sends later, it sends here).
        attached = True
        if watcher.attach(job_id, position) <= position:
            break
    while (live := await watcher.next()) is not None:
        if live.seq <= position:
            continue
        yield live
        position = live.seq
        if live.type in TERMINAL_EVENTS:
            return
