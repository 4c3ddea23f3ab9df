"""/v1/jobs/{id}/events: a job's event log, as pages and as a Server-Sent Events stream."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app.auth.deps import PrincipalDep, get_principal
from app.core.deps import SessionDep
from app.core.errors import V1_ERRORS
from app.events import service
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


def stream_position(
    session: SessionDep,
    principal: PrincipalDep,
    job_id: str,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    after: Annotated[str | None, Query(max_length=20)] = None,
) -> int:
    """Checked before the stream starts, so that errors are still plain 4xx answers."""
    get_job(session, principal.tenant_id, job_id)
    session.close()  # the stream polls with short sessions of its own
    return service.parse_position(last_event_id or after, "Last-Event-ID")


@router.get("/{job_id}/events/stream", response_class=EventSourceResponse)
async def stream_events(
    job_id: str, position: Annotated[int, Depends(stream_position)]
) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: the log after `Last-Event-ID` (or `after`), then each new event as
    it is written, by any API or worker process; the stream ends after the job's last event."""
    async for event in service.follow(job_id, position):
        yield ServerSentEvent(
            id=str(event.seq), event=event.type, data=event.model_dump(mode="json")
        )
