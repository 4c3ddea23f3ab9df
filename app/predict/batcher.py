"""Dynamic micro-batching on one forward thread, shared fairly between tenants.

Requests queue per tenant, model and precision (key "model_id:precision"). The forward thread is the
scheduler: whenever it is free it takes the next queue in turn (round-robin over tenants, the
tenant of the last pass after any other that waits; then over each tenant's queues) and runs one forward pass over up to `max_batch` of that queue's
waiting inputs (and of at most `max_batch_chars` characters: long inputs make smaller passes,
whose tokenization and forward take about as long), tokenized together with dynamic padding. A request bigger than a pass is split
over several, so a tenant sending 256-input requests holds the thread for one pass at a time,
and another tenant's lone input waits for at most that one pass. A lone request runs at once;
only when the queue's previous pass served several requests (the model is under load) and no
other queue is waiting does the thread wait up to `max_wait` for more.

Every pass of a process runs on this one thread: torch gives each calling thread its own
OpenMP team, and with more teams than cores OpenMP stops spinning between parallel regions,
which on a small CPU slowed a lone request's pass by about half. Scheduling on the thread
itself, not in an event-loop task, means nothing can cancel a pass half way: every request
taken into a pass gets its answer or its error.

Queues are bounded: a request is refused while `max_queued_per_model` inputs wait for its model
(all precisions together; Overloaded "model", answered 429) or `max_queued` for the process
("process", 503). A request that is taken may overshoot a bound by its own size, so the check
needs no size and can run before the request body is read (see admission.py). A request whose
future is cancelled (its client went away) is dropped from its queue, its inputs never run.
"""

import asyncio
import contextlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.observability.predict import observe_predict

Labelled = list[tuple[str, dict[str, float]]]


class Model(Protocol):
    def predict(self, texts: list[str], pairs: list[str] | None) -> Labelled: ...


class Overloaded(Exception):
    """A queue bound was reached; `scope` is "model" or "process"."""

    def __init__(self, scope: str, queued: int, limit: int) -> None:
        super().__init__(f"{queued} inputs are waiting for this {scope}; the limit is {limit}.")
        self.scope = scope


class BatcherClosed(Exception):
    """The service is shutting down."""


@dataclass(eq=False)
class _Request:
    texts: list[str]
    pairs: list[str] | None
    future: asyncio.Future[Labelled] = field(repr=False)
    loop: asyncio.AbstractEventLoop = field(repr=False)
    taken: int = 0  # inputs already handed to a pass
    answered: int = 0  # inputs whose labels are in `results`
    dropped: bool = False  # cancelled or failed: its remaining inputs never run
    results: Labelled = field(default_factory=list, repr=False)
    queue: "_Queue | None" = field(default=None, repr=False)


_Part = tuple[_Request, int, int]


@dataclass(eq=False)
class _Queue:
    key: str
    tenant: str
    requests: deque[_Request] = field(default_factory=deque)
    waiting: int = 0  # inputs not yet taken into a pass
    last_pass_requests: int = 0

    @property
    def group(self) -> tuple[str, str]:
        """(tenant, model id): the queues of one model's precisions share a bound."""
        return self.tenant, self.key.partition(":")[0]

    def take(self, room: int, chars: int, first: bool) -> tuple[list[_Part], int]:
        """Up to `room` waiting inputs of at most `chars` characters together (the `first` of a
        pass is taken whatever its size), as (request, start, end) slices, oldest first; and
        the characters taken."""
        parts: list[_Part] = []
        used = 0
        while room > 0 and self.requests:
            request = self.requests[0]
            if request.dropped:
                self.requests.popleft()
                continue
            start = end = request.taken
            while end < len(request.texts) and room > 0:
                size = len(request.texts[end]) + (len(request.pairs[end]) if request.pairs else 0)
                if used + size > chars and not (first and not used and end == start):
                    room = 0
                    break
                used += size
                room -= 1
                end += 1
            if end > start:
                parts.append((request, start, end))
                request.taken = end
                first = False
            if end == len(request.texts):
                self.requests.popleft()
        return parts, used


class Batcher:
    """The forward thread and the bounded per-model queues it serves."""

    def __init__(
        self,
        load: Callable[[str], Model],
        max_batch: int,
        max_wait_seconds: float,
        max_queued_per_model: int,
        max_queued: int,
        max_batch_chars: int = 8192,
    ) -> None:
        self.load = load  # called on the forward thread with a queue's key
        self.max_batch = max(1, max_batch)
        self.max_batch_chars = max(1, max_batch_chars)
        self.max_wait = max(0.0, max_wait_seconds)
        self.max_queued_per_model = max(1, max_queued_per_model)
        self.max_queued = max(1, max_queued)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # One queue per (tenant, key): a tenant's turn and bound never hold another's inputs.
        self._queues: dict[tuple[str, str], _Queue] = {}
        # Queues with waiting inputs, in turn order: tenant -> its models' keys.
        self._turns: OrderedDict[str, OrderedDict[str, None]] = OrderedDict()
        self._queued = 0
        self._group_waiting: dict[tuple[str, str], int] = {}
        self._last_tenant: str | None = None
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="predict", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Inputs waiting, all queues together (not counting the pass in flight)."""
        return self._queued

    def refusal(self, tenant: str, model_id: str) -> Overloaded | None:
        """Why a new request of `tenant` for `model_id` would be refused now, if it would."""
        waiting = self._group_waiting.get((tenant, model_id), 0)
        if waiting >= self.max_queued_per_model:
            return Overloaded("model", waiting, self.max_queued_per_model)
        if self._queued >= self.max_queued:
            return Overloaded("process", self._queued, self.max_queued)
        return None

    def call(self, function: Callable[[], Any]) -> Future[Any]:
        """Run `function` on the forward thread, before any waiting pass (the bf16 probe)."""
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise BatcherClosed("The predict service is shutting down.")
            self._calls.append((function, future))
            self._wake.notify()
        return future

    def submit(
        self, tenant: str, key: str, texts: list[str], pairs: list[str] | None
    ) -> "asyncio.Future[Labelled]":
        """Queue the inputs (raises Overloaded when a bound is reached); the future gets their
        labels, in order, once passes have run them all. Cancelling it drops the inputs not yet
        run."""
        loop = asyncio.get_running_loop()
        request = _Request(texts, pairs, loop.create_future(), loop)
        if not texts:
            request.future.set_result([])
            return request.future
        self._enqueue(tenant, key, request)
        request.future.add_done_callback(lambda _: self._drop(request))
        return request.future

    async def predict(
        self, tenant: str, key: str, texts: list[str], pairs: list[str] | None
    ) -> Labelled:
        return await self.submit(tenant, key, texts, pairs)

    def close(self) -> None:
        """Stop the thread after the pass in flight; waiting requests fail with BatcherClosed."""
        with self._lock:
            self._closed = True
            waiting = [r for q in self._queues.values() for r in q.requests if not r.dropped]
            for queue in self._queues.values():
                queue.requests.clear()
                queue.waiting = 0
            self._turns.clear()
            self._queued = 0
            self._group_waiting.clear()
            calls = list(self._calls)
            self._calls.clear()
            self._wake.notify_all()
        for request in waiting:
            request.dropped = True
            _settle(request, BatcherClosed("The predict service is shutting down."))
        for _, future in calls:
            future.set_exception(BatcherClosed("The predict service is shutting down."))

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # --- on the event loop ----------------------------------------------------------------
    def _enqueue(self, tenant: str, key: str, request: _Request) -> None:
        size = len(request.texts)
        with self._lock:
            if self._closed:
                raise BatcherClosed("The predict service is shutting down.")
            refusal = self.refusal(tenant, key.partition(":")[0])
            if refusal is not None:
                raise refusal
            queue = self._queues.get((tenant, key))
            if queue is None:
                queue = self._queues[tenant, key] = _Queue(key, tenant)
            queue.requests.append(request)
            request.queue = queue
            if not queue.waiting:
                self._turns.setdefault(tenant, OrderedDict())[key] = None
            self._count(queue, size)
            self._wake.notify()

    def _drop(self, request: _Request) -> None:
        """The future is done: if it was cancelled, its inputs not yet taken are not run."""
        if not request.future.cancelled():
            return
        with self._lock:
            if request.dropped:
                return
            request.dropped = True
            queue = request.queue
            untaken = len(request.texts) - request.taken
            if queue is None or not untaken:
                return
            self._count(queue, -untaken)
            if not queue.waiting:
                queue.requests.clear()  # only dropped requests are left
                self._leave_turns(queue)

    # --- under the lock ----------------------------------------------------------------------
    def _count(self, queue: _Queue, inputs: int) -> None:
        """`inputs` more (or, negative, fewer) waiting in `queue`."""
        queue.waiting += inputs
        self._queued += inputs
        waiting = self._group_waiting.get(queue.group, 0) + inputs
        if waiting:
            self._group_waiting[queue.group] = waiting
        else:
            self._group_waiting.pop(queue.group, None)

    def _leave_turns(self, queue: _Queue) -> None:
        keys = self._turns.get(queue.tenant)
        if keys is not None:
            keys.pop(queue.key, None)
            if not keys:
                del self._turns[queue.tenant]

    def _others_waiting(self, queue: _Queue) -> bool:
        return len(self._turns) > 1 or len(self._turns.get(queue.tenant, ())) > 1

    def _next_pass(self) -> tuple[_Queue, list[_Part]] | None:
        """Wait for work; the next queue in turn and the slices of its next pass. None to stop;
        a call to run first is left in `_calls`. The loop only goes round without waiting after
        taking a queue out of `_turns`, so it never spins."""
        with self._lock:
            while True:
                if self._closed:
                    return None
                if self._calls:
                    return None
                if not self._turns:
                    self._wake.wait()
                    continue
                tenant = next(iter(self._turns))
                if tenant == self._last_tenant and len(self._turns) > 1:
                    # Whoever came while this tenant's pass ran goes first.
                    tenant = list(self._turns)[1]
                self._last_tenant = tenant
                keys = self._turns[tenant]
                key = next(iter(keys))
                self._turns.move_to_end(tenant)  # the next pass is another tenant's, if any
                keys.move_to_end(key)
                queue = self._queues[tenant, key]
                parts, chars = self._take(queue, self.max_batch, self.max_batch_chars, True)
                size = sum(end - start for _, start, end in parts)
                if queue.last_pass_requests > 1 and self.max_wait:
                    deadline = time.monotonic() + self.max_wait
                    while (
                        size < self.max_batch
                        and chars < self.max_batch_chars
                        and not self._others_waiting(queue)
                    ):
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 or self._closed or self._calls:
                            break
                        self._wake.wait(remaining)
                        more, more_chars = self._take(
                            queue, self.max_batch - size, self.max_batch_chars - chars, not parts
                        )
                        parts += more
                        size += sum(end - start for _, start, end in more)
                        chars += more_chars
                if not parts and queue.waiting:  # not expected: only dropped inputs were left
                    self._count(queue, -queue.waiting)
                if not queue.waiting:
                    self._leave_turns(queue)
                self._prune(queue)
                if parts:
                    queue.last_pass_requests = len({id(request) for request, _, _ in parts})
                    return queue, parts

    def _take(self, queue: _Queue, room: int, chars: int, first: bool) -> tuple[list[_Part], int]:
        parts, used = queue.take(room, chars, first)
        self._count(queue, -sum(end - start for _, start, end in parts))
        return parts, used

    def _prune(self, keep: _Queue) -> None:
        """Forget idle queues (a queue is kept while idle so it remembers it was busy)."""
        if len(self._queues) <= 64:
            return
        for key in [k for k, q in self._queues.items() if not q.waiting and q is not keep]:
            del self._queues[key]

    def _serve(self) -> None:
        while True:
            work = self._next_pass()
            with self._lock:
                calls = list(self._calls)
                self._calls.clear()
            for function, future in calls:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(function())
                    except BaseException as exc:
                        future.set_exception(exc)
            if work is None:
                if self._closed:
                    return
                continue
            self._forward(*work)

    def _forward(self, queue: _Queue, parts: list[_Part]) -> None:
        texts = [text for request, start, end in parts for text in request.texts[start:end]]
        pairs = None
        if parts[0][0].pairs is not None:
            pairs = [p for request, start, end in parts for p in (request.pairs or [])[start:end]]
        try:
            model = self.load(queue.key)  # from the model cache; the first call loads
            started = time.perf_counter()
            labelled = model.predict(texts, pairs)
            observe_predict(len(texts), time.perf_counter() - started)
        except Exception as exc:  # every request of the pass gets the error
            for request, _, _ in parts:
                self._fail(queue, request, exc)
            return
        offset = 0
        for request, start, end in parts:
            request.results.extend(labelled[offset : offset + end - start])
            offset += end - start
            request.answered += end - start
            if request.answered == len(request.texts):
                _settle(request, request.results)

    def _fail(self, queue: _Queue, request: _Request, exc: Exception) -> None:
        with self._lock:
            if not request.dropped:
                request.dropped = True
                self._count(queue, request.taken - len(request.texts))
                if not queue.waiting:
                    self._leave_turns(queue)
        _settle(request, exc)


def _settle(request: _Request, outcome: Labelled | BaseException) -> None:
    """Hand a request its answer or error on its own event loop."""

    def settle() -> None:
        if request.future.done():  # the client went away and cancelled it
            return
        if isinstance(outcome, BaseException):
            request.future.set_exception(outcome)
        else:
            request.future.set_result(outcome)

    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
        request.loop.call_soon_threadsafe(settle)
