"""The event-stream hub on a real database: all watchers of a job share one poll, each tenant
has a cap, and streams end at their maximum duration, when their key is revoked, or when they
fall behind (a slow client), always so that a reconnect with Last-Event-ID loses nothing."""

import asyncio
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from app.auth.repository import ApiKeyRepository
from app.auth.service import Principal, authenticate
from app.core.db import session_scope
from app.core.errors import ApiError
from app.events import service
from app.events.hub import EventHub, ReadEvents, Watcher
from app.events.repository import EventRepository
from app.events.schemas import EventRead
from tests.support.auth import issue_test_key
from tests.support.rows import job_row

POLL = 0.02


class CountingReads:
    """The hub's database read, counted (every caller: pollers and catch-up reads alike)."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, job_id: str, after_seq: int, limit: int) -> list[EventRead]:
        with self.lock:
            self.calls += 1
        return service.read_after(job_id, after_seq, limit)


def make_hub(read: ReadEvents = service.read_after, **limits: Any) -> EventHub:
    settings: dict[str, Any] = {
        "max_streams_per_tenant": 1000,
        "max_seconds": 60.0,
        "key_check_seconds": 60.0,
        "poll_seconds": POLL,
    }
    settings.update(limits)
    return EventHub(read=read, active_keys=service.active_key_ids, **settings)


def principal_of(database_url: str, tenant: str = "tests") -> Principal:
    secret = issue_test_key(database_url, tenant)
    with session_scope() as session:
        principal = authenticate(session, secret)
    assert principal is not None
    return principal


def new_job(principal: Principal) -> str:
    with session_scope() as session:
        job = job_row(principal.tenant_id)
        session.add(job)
        session.flush()
        EventRepository(session).append(job.id, "queued")
        return job.id


def append(job_id: str, type: str, data: dict[str, Any] | None = None) -> None:
    with session_scope() as session:
        EventRepository(session).append(job_id, type, data)


async def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(function, *args)


async def wait_until(predicate: Callable[[], bool], timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def collect(watcher: Watcher, job_id: str, after: int, into: list[EventRead]) -> None:
    """Follow as the endpoint does, closing the watcher at the end."""
    try:
        async for event in service.follow(watcher, job_id, after):
            into.append(event)
    finally:
        watcher.close()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


@pytest.fixture
def principal(configured: Path, database_url: str) -> Principal:
    return principal_of(database_url)


def test_watchers_of_one_job_share_one_poll(principal: Principal) -> None:
    watchers, rounds = 200, 20
    job_id = new_job(principal)
    reads = CountingReads()

    async def scenario() -> None:
        hub = make_hub(reads)
        seen: list[list[EventRead]] = [[] for _ in range(watchers)]
        tasks = [
            asyncio.create_task(collect(hub.open(principal), job_id, 0, seen[i]))
            for i in range(watchers)
        ]
        await wait_until(lambda: all(w.feed is not None for w in hub.watchers))
        assert len(hub.feeds) == 1
        # Keep them all waiting for a while: one reader polls for all of them.
        start = hub.polls
        await wait_until(lambda: hub.polls >= start + rounds)
        await in_thread(append, job_id, "started", {"attempt": 1, "worker": "w1"})
        await in_thread(append, job_id, "cancelled", {"while": "running"})
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        for events in seen:
            assert [(e.seq, e.type) for e in events] == [
                (1, "queued"),
                (2, "started"),
                (3, "cancelled"),
            ]
        # Each watcher reads the log at most twice when it joins; after that, only the job's
        # poller reads. A poller per watcher would have read watchers * rounds times.
        assert hub.polls >= rounds
        assert reads.calls <= 2 * watchers + hub.polls < watchers * rounds
        assert not hub.feeds and not hub.watchers and not hub.per_tenant
        await hub.close()

    run(scenario)


def test_cap_per_tenant_answers_429(principal: Principal, database_url: str) -> None:
    other = principal_of(database_url, tenant="other")

    async def scenario() -> None:
        hub = make_hub(max_streams_per_tenant=2)
        first, second = hub.open(principal), hub.open(principal)
        with pytest.raises(ApiError) as refused:
            hub.open(principal)
        assert refused.value.status_code == 429 and refused.value.code == "too_many_streams"
        assert refused.value.headers is not None and int(refused.value.headers["Retry-After"]) > 0
        hub.open(other).close()  # other tenants are not affected
        first.close()
        first.close()  # closing twice frees one slot only
        third = hub.open(principal)
        with pytest.raises(ApiError):
            hub.open(principal)
        second.close()
        third.close()
        assert not hub.per_tenant
        await hub.close()

    run(scenario)


def test_stream_ends_at_max_duration_and_resumes_from_last_event_id(
    principal: Principal,
) -> None:
    job_id = new_job(principal)

    async def scenario() -> None:
        hub = make_hub(max_seconds=0.5)
        first: list[EventRead] = []
        watcher = hub.open(principal)
        await asyncio.wait_for(collect(watcher, job_id, 0, first), 30)
        assert watcher.ended == "max_duration"
        assert [e.seq for e in first] == [1]
        await in_thread(append, job_id, "cancelled", {"while": "queued"})
        second: list[EventRead] = []
        await asyncio.wait_for(collect(hub.open(principal), job_id, first[-1].seq, second), 30)
        assert [(e.seq, e.type) for e in second] == [(2, "cancelled")]
        await hub.close()

    run(scenario)


def test_revoked_key_ends_its_streams(principal: Principal, database_url: str) -> None:
    other = principal_of(database_url, tenant="other")
    job_id = new_job(principal)
    other_job = new_job(other)

    def revoke(key_id: str) -> None:
        with session_scope() as session:
            assert ApiKeyRepository(session).revoke(key_id)

    async def scenario() -> None:
        hub = make_hub(key_check_seconds=0.1)
        revoked = [hub.open(principal) for _ in range(3)]
        kept = hub.open(other)
        tasks = [asyncio.create_task(collect(w, job_id, 0, [])) for w in revoked]
        kept_task = asyncio.create_task(collect(kept, other_job, 0, []))
        await wait_until(lambda: all(w.feed is not None for w in hub.watchers))
        await in_thread(revoke, principal.key_id)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert {w.ended for w in revoked} == {"revoked"}
        assert hub.key_checks >= 1 and kept.ended is None and not kept_task.done()
        assert hub.per_tenant == {other.tenant_id: 1}
        await hub.close()
        await asyncio.wait_for(kept_task, 30)
        assert kept.ended == "shutdown"

    run(scenario)


def test_a_watcher_that_falls_behind_is_dropped(principal: Principal) -> None:
    job_id = new_job(principal)

    async def scenario() -> None:
        # A poll reads at most page_size events, so a watcher that keeps up is never dropped.
        hub = make_hub(queue_size=5, page_size=2)
        slow, fast = hub.open(principal), hub.open(principal)
        fast_seen: list[EventRead] = []
        fast_task = asyncio.create_task(collect(fast, job_id, 0, fast_seen))
        slow_stream = service.follow(slow, job_id, 1)

        async def take_one() -> EventRead:
            return await anext(slow_stream)

        slow_first = asyncio.create_task(take_one())  # it joins, takes one, then stalls
        await wait_until(lambda: slow.feed is not None and fast.feed is not None)
        for step in range(12):
            await in_thread(append, job_id, "train_loss", {"step": step})
        await wait_until(lambda: len(fast_seen) == 13)
        assert (await slow_first).seq == 2
        assert slow.ended == "dropped"
        # It sends what it had queued (never more than queue_size), then ends.
        rest = [event.seq async for event in slow_stream]
        assert rest == [3, 4, 5, 6, 7]
        slow.close()
        assert not fast_task.done() and fast.ended is None
        await in_thread(append, job_id, "cancelled", {"while": "running"})
        await asyncio.wait_for(fast_task, 30)
        assert fast_seen[-1].type == "cancelled"
        await hub.close()

    run(scenario)


def test_a_watcher_joining_a_poller_ahead_of_it_reads_the_gap(principal: Principal) -> None:
    """Events the poller sent before a watcher joined are read by the watcher itself."""
    job_id = new_job(principal)
    gap_written, late_started = threading.Event(), threading.Event()
    held_once: list[int] = []

    def read(job: str, after: int, limit: int) -> list[EventRead]:
        events = service.read_after(job, after, limit)
        if late_started.is_set() and after == 2 and not held_once:  # stale on return
            held_once.append(after)
            assert gap_written.wait(30)
        return events

    async def scenario() -> None:
        hub = make_hub(read)
        first_seen: list[EventRead] = []
        first = asyncio.create_task(collect(hub.open(principal), job_id, 0, first_seen))
        for step in range(3):
            await in_thread(append, job_id, "train_loss", {"step": step})
        await wait_until(lambda: len(first_seen) == 4)
        late_seen: list[EventRead] = []
        late_started.set()  # the poller is at 4: a read after 2 is the late watcher's first
        late = asyncio.create_task(collect(hub.open(principal), job_id, 2, late_seen))
        await wait_until(lambda: bool(held_once))
        await in_thread(append, job_id, "train_loss", {"step": 3})
        await wait_until(lambda: len(first_seen) == 5)  # the poller is at 5 now
        gap_written.set()
        await wait_until(lambda: len(late_seen) == 3)
        await in_thread(append, job_id, "cancelled", {"while": "running"})
        await asyncio.wait_for(asyncio.gather(first, late), 30)
        assert [e.seq for e in late_seen] == [3, 4, 5, 6]
        assert [e.seq for e in first_seen] == [1, 2, 3, 4, 5, 6]
        await hub.close()

    run(scenario)
