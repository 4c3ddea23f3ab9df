"""Reading a job's event log: pages, and the live stream fed from the database."""

import asyncio
from collections.abc import AsyncIterator

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from app.core.db import session_scope
from app.core.errors import ApiError
from app.events.repository import EventRepository
from app.events.schemas import TERMINAL_EVENTS, EventList, EventRead

POLL_SECONDS = 0.5
PAGE = 500


def parse_position(value: str | None, what: str) -> int:
    """A cursor or Last-Event-ID is the `seq` of the last event seen."""
    if value is None or value == "":
        return 0
    if not value.isdigit() or len(value) > 12:
        raise ApiError(400, "invalid_cursor", f"The {what} must be an event's seq, like '12'.")
    return int(value)


def read_page(session: Session, job_id: str, after_seq: int, limit: int) -> list[EventRead]:
    rows = EventRepository(session).list_after(job_id, after_seq, limit)
    return [EventRead.model_validate(row) for row in rows]


def _poll(job_id: str, after_seq: int) -> list[EventRead]:
    with session_scope() as session:  # short: a stream must not hold a connection between polls
        return read_page(session, job_id, after_seq, PAGE)


def list_events(session: Session, job_id: str, after_seq: int, limit: int) -> EventList:
    events = read_page(session, job_id, after_seq, limit + 1)
    page = events[:limit]
    next_cursor = str(page[-1].seq) if len(events) > limit else None
    return EventList(data=page, next_cursor=next_cursor)


async def follow(job_id: str, after_seq: int) -> AsyncIterator[EventRead]:
    """Every event after `after_seq`, then new ones as any process writes them, until the
    job's final event. Polls the database, so writers on other machines are seen too."""
    position = after_seq
    while True:
        events = await run_in_threadpool(_poll, job_id, position)
        for event in events:
            yield event
            position = event.seq
            if event.type in TERMINAL_EVENTS:
                return
        if len(events) < PAGE:
            await asyncio.sleep(POLL_SECONDS)
