"""Dynamic micro-batching: concurrent predict requests for one model share forward passes.

Requests queue per model. One forward pass at a time runs over every input that is waiting
when it starts (up to `max_batch`), tokenized together with dynamic padding. A lone request is
run at once; only when the previous pass served several requests (the model is under load)
does the batcher wait up to `max_wait` for more.

Every batcher of a process runs its passes on one shared thread: torch gives each calling
thread its own OpenMP team, and with more teams than cores OpenMP stops spinning between
parallel regions, which on a small CPU slowed a lone request's pass by about half.
"""

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

from app.observability.predict import observe_predict
from app.predict.loaded_model import LoadedModel

Labelled = list[tuple[str, dict[str, float]]]


@dataclass
class _Request:
    texts: list[str]
    pairs: list[str] | None
    future: asyncio.Future[Labelled] = field(repr=False)


@lru_cache
def forward_executor() -> ThreadPoolExecutor:
    """The one thread of this process that runs torch: forward passes and model loads."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")


class MicroBatcher:
    """Batches the requests of one model on one event loop."""

    def __init__(
        self, load: Callable[[], LoadedModel], max_batch: int, max_wait_seconds: float
    ) -> None:
        self.load = load
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait_seconds)
        self.queue: asyncio.Queue[_Request] = asyncio.Queue()
        self.executor = forward_executor()
        self.loop = asyncio.get_running_loop()
        self.task = self.loop.create_task(self._serve())
        self.last_batch_requests = 0

    async def predict(self, texts: list[str], pairs: list[str] | None) -> Labelled:
        future: asyncio.Future[Labelled] = self.loop.create_future()
        self.queue.put_nowait(_Request(texts, pairs, future))
        return await future

    def close(self) -> None:
        self.task.cancel()

    async def _serve(self) -> None:
        while True:
            batch = [await self.queue.get()]
            size = len(batch[0].texts)
            deadline = self.loop.time() + (self.max_wait if self.last_batch_requests > 1 else 0)
            while size < self.max_batch:
                if self.queue.empty():
                    remaining = deadline - self.loop.time()
                    if remaining <= 0:
                        break
                    try:
                        request = await asyncio.wait_for(self.queue.get(), remaining)
                    except TimeoutError:
                        break
                else:
                    request = self.queue.get_nowait()
                batch.append(request)
                size += len(request.texts)
            self.last_batch_requests = len(batch)
            await self._forward(batch)

    async def _forward(self, batch: list[_Request]) -> None:
        texts = [text for request in batch for text in request.texts]
        pairs = None
        if batch[0].pairs is not None:
            pairs = [pair for request in batch for pair in request.pairs or []]
        try:
            labelled = await self.loop.run_in_executor(self.executor, self._run, texts, pairs)
        except Exception as exc:  # every request of the batch gets the error
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        start = 0
        for request in batch:
            end = start + len(request.texts)
            if not request.future.done():  # a client that went away has cancelled its future
                request.future.set_result(labelled[start:end])
            start = end

    def _run(self, texts: list[str], pairs: list[str] | None) -> Labelled:
        model = self.load()  # from the model cache; the first call loads, off the event loop
        started = time.perf_counter()
        labelled = model.predict(texts, pairs)
        observe_predict(len(texts), time.perf_counter() - started)
        return labelled
