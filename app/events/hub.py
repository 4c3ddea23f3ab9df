"""The event streams of one API process: each watched job is polled once, for all its watchers.

A `Watcher` is one open stream. It counts against its tenant's cap from `open()` until
`close()`, and it ends (its `next()` answers None) when it reaches the maximum duration, when
its API key is revoked, when it falls more than `queue_size` events behind (a slow client: it
reconnects with Last-Event-ID instead of growing this process's memory), or when the hub
closes. Waiting streams hold no thread, no database connection and no request-session slot:
per watched job one task polls the log, and per process one task re-checks the keys of all open
streams, each in a short session on a worker thread.
"""

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Collection

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from app.auth.service import Principal
from app.core.config import Settings
from app.core.errors import ApiError
from app.events.schemas import TERMINAL_EVENTS, EventRead

logger = logging.getLogger(__name__)

ReadEvents = Callable[[str, int, int], list[EventRead]]  # (job_id, after_seq, limit) -> page
ActiveKeys = Callable[[Collection[str]], set[str]]  # key ids -> those not revoked

# Events a watcher may lag behind its job's poller before it is dropped: two pages, since one
# poll may queue a whole page at once. Each entry is a reference to an event all share.
QUEUE_SIZE = 1000
RETRY_AFTER_SECONDS = 10


class Watcher:
    """One open event stream: a bounded queue fed by its job's poller."""

    def __init__(self, hub: "EventHub", principal: Principal) -> None:
        self.hub = hub
        self.principal = principal
        self.deadline = time.monotonic() + hub.max_seconds
        self.ended: str | None = None  # why it ended: "max_duration", "revoked", "dropped", …
        self.feed: _JobFeed | None = None
        self._queue: deque[EventRead] = deque()
        self._wake = asyncio.Event()
        self._closed = False

    def attach(self, job_id: str, position: int) -> int:
        """Follow the job's new events from now on; the position its poller has reached (the
        caller reads the log up to there itself, since those events were sent before)."""
        self.feed = self.hub._feed(job_id, position)
        return self.feed.add(self)

    async def next(self) -> EventRead | None:
        """The next event from the poller; None once the watcher has ended. A watcher dropped
        for falling behind still sends what it had queued; any other end is at once (the
        client resumes from the last event it got)."""
        while True:
            if self.ended is None and time.monotonic() >= self.deadline:
                self.ended = "max_duration"
            if self._queue and self.ended in (None, "dropped"):
                return self._queue.popleft()
            if self.ended is not None:
                return None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.deadline - time.monotonic())

    def offer(self, event: EventRead) -> bool:
        """Called by the poller; False (and the watcher ends) when its queue is full."""
        if len(self._queue) >= self.hub.queue_size:
            self.end("dropped")
            return False
        self._queue.append(event)
        self._wake.set()
        return True

    def end(self, reason: str) -> None:
        """Stop the stream once the events already queued are sent."""
        if self.ended is None:
            self.ended = reason
        self._wake.set()

    def close(self) -> None:
        """The stream is over: leave the job's poller and free the tenant's slot."""
        if self._closed:
            return
        self._closed = True
        self.end("closed")
        self.hub._release(self)


class _JobFeed:
    """The poller of one job: reads the log after `position` and offers each event to every
    watcher of the job."""

    def __init__(self, hub: "EventHub", job_id: str, position: int) -> None:
        self.hub = hub
        self.job_id = job_id
        self.position = position
        self.watchers: set[Watcher] = set()
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"events {job_id}")

    def add(self, watcher: Watcher) -> int:
        self.watchers.add(watcher)
        return self.position

    def remove(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)
        if not self.watchers and not self.task.done():
            self._stop()

    def _stop(self) -> None:
        if self.hub.feeds.get(self.job_id) is self:
            del self.hub.feeds[self.job_id]
        self.task.cancel()

    async def _run(self) -> None:
        page_full = False
        while True:
            if not page_full:
                await asyncio.sleep(self.hub.poll_seconds)
            try:
                events = await run_in_threadpool(
                    self.hub.read, self.job_id, self.position, self.hub.page_size
                )
            except Exception:
                logger.warning("polling the events of job %s failed", self.job_id, exc_info=True)
                page_full = False
                continue
            self.hub.polls += 1
            page_full = len(events) >= self.hub.page_size
            for event in events:
                self.position = event.seq
                for watcher in list(self.watchers):
                    if not watcher.offer(event):
                        self.watchers.discard(watcher)
                if event.type in TERMINAL_EVENTS:
                    # Gone from the hub in the same step, so no watcher can join after the end.
                    if self.hub.feeds.get(self.job_id) is self:
                        del self.hub.feeds[self.job_id]
                    return
            if not self.watchers:
                self._stop()
                return


class EventHub:
    """Per API process (on `app.state.event_hub`, made in the lifespan): the job pollers, the
    per-tenant stream count, and the periodic key check of open streams."""

    def __init__(
        self,
        read: ReadEvents,
        active_keys: ActiveKeys,
        max_streams_per_tenant: int,
        max_seconds: float,
        key_check_seconds: float,
        poll_seconds: float = 0.5,
        page_size: int = 500,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        if queue_size < page_size:
            raise ValueError("queue_size must hold a whole page of events")
        self.read = read
        self.active_keys = active_keys
        self.max_streams_per_tenant = max_streams_per_tenant
        self.max_seconds = max_seconds
        self.key_check_seconds = key_check_seconds
        self.poll_seconds = poll_seconds
        self.page_size = page_size
        self.queue_size = queue_size
        self.feeds: dict[str, _JobFeed] = {}
        self.watchers: set[Watcher] = set()
        self.per_tenant: Counter[str] = Counter()
        self.polls = 0  # database reads made by the pollers, for tests and benchmarks
        self.key_checks = 0
        self._key_task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "EventHub":
        from app.events.service import PAGE, POLL_SECONDS, active_key_ids, read_after

        return cls(
            read=read_after,
            active_keys=active_key_ids,
            max_streams_per_tenant=settings.max_streams_per_tenant,
            max_seconds=settings.stream_max_seconds,
            key_check_seconds=settings.stream_key_check_seconds,
            poll_seconds=POLL_SECONDS,
            page_size=PAGE,
        )

    def open(self, principal: Principal) -> Watcher:
        """A new stream of the principal's tenant; 429 `too_many_streams` over the cap."""
        tenant = principal.tenant_id
        if self.per_tenant[tenant] >= self.max_streams_per_tenant:
            raise ApiError(
                429,
                "too_many_streams",
                f"This tenant already has {self.max_streams_per_tenant} event streams open "
                "on this API process (TUNESERVE_MAX_STREAMS_PER_TENANT); close one, or page "
                "GET /v1/jobs/{id}/events instead.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.per_tenant[tenant] += 1
        watcher = Watcher(self, principal)
        self.watchers.add(watcher)
        if self._key_task is None or self._key_task.done():
            self._key_task = asyncio.get_running_loop().create_task(
                self._check_keys(), name="event stream key check"
            )
        return watcher

    async def close(self) -> None:
        """End every stream and stop every task (at API shutdown)."""
        for watcher in list(self.watchers):
            watcher.end("shutdown")
        tasks = [feed.task for feed in self.feeds.values()]
        if self._key_task is not None:
            tasks.append(self._key_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.feeds.clear()

    def _feed(self, job_id: str, position: int) -> _JobFeed:
        feed = self.feeds.get(job_id)
        if feed is None:
            feed = self.feeds[job_id] = _JobFeed(self, job_id, position)
        return feed

    def _release(self, watcher: Watcher) -> None:
        if watcher not in self.watchers:
            return
        self.watchers.discard(watcher)
        tenant = watcher.principal.tenant_id
        self.per_tenant[tenant] -= 1
        if self.per_tenant[tenant] <= 0:
            del self.per_tenant[tenant]
        if watcher.feed is not None:
            watcher.feed.remove(watcher)

    async def _check_keys(self) -> None:
        """Every `key_check_seconds`, one look-up of the keys of all open streams; the streams
        of a revoked key end."""
        while self.watchers:
            await asyncio.sleep(self.key_check_seconds)
            key_ids = {w.principal.key_id for w in self.watchers}
            if not key_ids:
                break
            try:
                active = await run_in_threadpool(self.active_keys, key_ids)
            except Exception:
                logger.warning("checking the keys of open event streams failed", exc_info=True)
                continue
            self.key_checks += 1
            for watcher in list(self.watchers):
                if watcher.principal.key_id not in active:
                    watcher.end("revoked")


def get_event_hub(request: Request) -> EventHub:
    hub: EventHub = request.app.state.event_hub
    return hub
