"""/v1/jobs/{id}/events: a job's event log, as pages and as a Server-Sent Events stream."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app.auth.deps import PrincipalDep, get_principal
from app.core.deps import SessionDep
from app.core.errors import V1_ERRORS
from app.events import service
from app.events.hub import EventHub, Watcher, get_event_hub
from app.events.schemas import EventList
from app.jobs.service import get_job

router = APIRouter(
    prefix="/v1/jobs",
    tags=["events"],
    dependencies=[Depends(get_principal)],
    responses=V1_ERRORS,
)


@router.get("/{job_id}/events", response_model=EventList)
def list_events(
    session: SessionDep,
    principal: PrincipalDep,
    job_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
) -> EventList:
    """The job's events in order; pass `next_cursor` back as `cursor` for the next page."""
    get_job(session, principal.tenant_id, job_id)
    return service.list_events(session, job_id, service.parse_position(cursor, "cursor"), limit)


@dataclass(frozen=True)
class StreamStart:
    watcher: Watcher
    position: int


async def open_stream(
    hub: Annotated[EventHub, Depends(get_event_hub)],
    principal: PrincipalDep,
    job_id: str,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    after: Annotated[str | None, Query(max_length=20)] = None,
) -> AsyncIterator[StreamStart]:
    """Checked before the stream starts, so that errors are still plain 4xx answers. No
    request session: a stream must not hold one of their slots (nor a connection) while it
    waits, so the job is looked up in a short session of its own."""
    position = service.parse_position(last_event_id or after, "Last-Event-ID")
    watcher = hub.open(principal)  # 429 over the tenant's cap
    try:
        await run_in_threadpool(service.check_job, principal.tenant_id, job_id)
        yield StreamStart(watcher, position)
    finally:
        watcher.close()


@router.get("/{job_id}/events/stream", response_class=EventSourceResponse)
async def stream_events(
    job_id: str, start: Annotated[StreamStart, Depends(open_stream)]
) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: the log after `Last-Event-ID` (or `after`), then each new event as
    it is written, by any API or worker process; the stream ends after the job's last event,
    or earlier (the maximum duration, a revoked key, a client that fell behind): then
    reconnect with `Last-Event-ID`."""
    async for event in service.follow(start.watcher, job_id, start.position):
        yield ServerSentEvent(
            id=str(event.seq), event=event.type, data=event.model_dump(mode="json")
        )
