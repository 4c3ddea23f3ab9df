"""Predictions from trained models: one object per API process owns the predict state.

`PredictService` holds the bounded model cache, the per-model queues and the one forward thread
(see batcher.py). It is made in the FastAPI lifespan and kept on `app.state.predict`.
"""

import asyncio
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import torch

from app.core.config import Settings
from app.core.errors import ApiError, NotFound
from app.models.schemas import Prediction, PredictRequest
from app.predict.batcher import Batcher, BatcherClosed, Labelled, Model, Overloaded
from app.predict.cache import ModelCache
from app.predict.loaded_model import LoadedModel
from app.storage import get_storage
from app.storage.keys import model_prefix
from app.tables import TrainedModel

RETRY_AFTER_SECONDS = "1"
# Deleted model ids remembered. A deleted model's row leaves the row cache at once and its
# files are gone, so the id is needed only for a request that read the row just before the
# delete (or one whose loaded model is still cached): the last few thousand deletes cover that.
GONE_KEPT = 4096


def forward_threads(setting: int) -> int:
    """The forward pass's threads: the setting, or (0) one less than this process's cores."""
    if setting > 0:
        return setting
    return max(1, len(os.sched_getaffinity(0)) - 1)


class PredictService:
    """The model cache, the batch queues and the forward thread of one process."""

    def __init__(
        self,
        load: Callable[[str], Model],
        cache_size: int,
        max_batch: int,
        max_wait_seconds: float,
        max_queued_per_model: int,
        max_queued: int,
        max_batch_chars: int = 8192,
        threads: int = 0,
    ) -> None:
        # Touched only on the forward thread: a model is loaded, used and evicted there, so
        # eviction never happens under a pass in flight.
        self.cache: ModelCache[Model] = ModelCache(cache_size, load)
        self._gone: OrderedDict[str, None] = OrderedDict()  # the last GONE_KEPT deleted
        self.batcher = Batcher(
            self.cache.get,
            max_batch,
            max_wait_seconds,
            max_queued_per_model,
            max_queued,
            max_batch_chars,
        )
        # On the forward thread itself: OpenMP's thread count belongs to the calling thread.
        self.batcher.call(partial(torch.set_num_threads, forward_threads(threads)))

    @classmethod
    def from_settings(cls, settings: Settings) -> "PredictService":
        storage = get_storage(settings)

        def load(key: str) -> LoadedModel:
            model_id, precision = key.split(":")
            try:
                with storage.local_dir(model_prefix(model_id)) as folder:
                    return LoadedModel.load(folder, precision)
            except FileNotFoundError:
                raise NotFound("model", model_id) from None  # deleted meanwhile

        return cls(
            load,
            cache_size=settings.model_cache_size,
            max_batch=settings.predict_max_batch,
            max_wait_seconds=settings.predict_max_wait_ms / 1000,
            max_queued_per_model=settings.predict_max_queued_inputs_per_model,
            max_queued=settings.predict_max_queued_inputs,
            max_batch_chars=settings.predict_max_batch_chars,
            threads=settings.predict_threads,
        )

    def refusal(self, tenant: str, model_id: str) -> ApiError | None:
        """The 429 or 503 a new request of `tenant` for `model_id` would get now, if any."""
        overloaded = self.batcher.refusal(tenant, model_id)
        return None if overloaded is None else _overloaded(overloaded)

    def forget(self, model_id: str) -> None:
        """A deleted model: requests from now on answer 404. Passes already queued or running
        finish with the loaded model, which the cache then ages out like any unused one."""
        self._gone[model_id] = None
        self._gone.move_to_end(model_id)
        while len(self._gone) > GONE_KEPT:
            self._gone.popitem(last=False)

    def run_on_forward_thread(self, function: Callable[[], Any]) -> Any:
        """Run `function` on the forward thread and wait for it (torch on any other thread
        would start a second OpenMP team)."""
        return self.batcher.call(function).result()

    def close(self) -> None:
        self.batcher.close()
        self.batcher.join(timeout=30)

    async def label(
        self,
        tenant: str,
        key: str,
        texts: list[str],
        pairs: list[str] | None,
        client_gone: Callable[[], Awaitable[object]] | None = None,
    ) -> Labelled:
        """Labels from a shared forward pass of `key` ("model_id:precision"). A full queue is
        answered 429 (this model) or 503 (the process); once `client_gone` returns the inputs
        not yet run are dropped."""
        try:
            work = self.batcher.submit(tenant, key, texts, pairs)
        except Overloaded as exc:
            raise _overloaded(exc) from None
        except BatcherClosed as exc:
            raise ApiError(503, "predict_unavailable", str(exc), headers=_RETRY) from None
        if client_gone is None:
            return await _answer(work)
        watcher = asyncio.ensure_future(client_gone())
        try:
            await asyncio.wait((work, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not work.done():
                work.cancel()  # the client went away: its inputs not yet run are dropped
        if work.cancelled():
            raise ApiError(499, "client_disconnected", "The client closed the connection.")
        return await _answer(work)

    async def predict(
        self,
        record: TrainedModel,
        request: PredictRequest,
        max_chars: int,
        precision: str,
        client_gone: Callable[[], Awaitable[object]] | None = None,
    ) -> list[Prediction]:
        """Validated here; labelled in a forward pass shared with concurrent requests for the
        same model in the same precision."""
        if record.id in self._gone:
            raise NotFound("model", record.id)
        texts, pairs = split_inputs(record, request, max_chars)
        labelled = await self.label(
            record.tenant_id, f"{record.id}:{precision}", texts, pairs, client_gone
        )
        return [
            Prediction.of(record.task, record.threshold, label, scores)
            for label, scores in labelled
        ]


_RETRY = {"Retry-After": RETRY_AFTER_SECONDS}


def _overloaded(exc: Overloaded) -> ApiError:
    if exc.scope == "model":
        return ApiError(
            429,
            "predict_overloaded",
            f"Too many inputs are waiting for this model: {exc} Retry after a second, or send "
            "fewer requests at once.",
            headers=_RETRY,
        )
    return ApiError(
        503,
        "predict_overloaded",
        f"The service has too many inputs waiting: {exc} Retry after a second.",
        headers=_RETRY,
    )


async def _answer(work: "asyncio.Future[Labelled]") -> Labelled:
    try:
        return await work
    except BatcherClosed as exc:
        raise ApiError(503, "predict_unavailable", str(exc), headers=_RETRY) from None


def split_inputs(
    record: TrainedModel, request: PredictRequest, max_chars: int
) -> tuple[list[str], list[str] | None]:
    """Check every input has the shape the model was trained on; return texts and pairs."""
    texts: list[str] = []
    pairs: list[str] = []
    for index, item in enumerate(request.inputs):
        text, pair = (item, None) if isinstance(item, str) else (item.text, item.text_pair)
        if not text.strip():
            raise ApiError(422, "empty_input", f"Input {index} is empty.")
        if len(text) + len(pair or "") > max_chars:
            raise ApiError(
                422,
                "input_too_long",
                f"Input {index} has {len(text) + len(pair or '')} characters; the limit is "
                f"{max_chars} per input (text and text_pair together).",
            )
        if record.text_pair and pair is None:
            raise ApiError(
                422,
                "text_pair_required",
                f"Model '{record.id}' was trained on text pairs; input {index} needs "
                '{"text": ..., "text_pair": ...}.',
            )
        if not record.text_pair and pair is not None:
            raise ApiError(
                422,
                "text_pair_not_supported",
                f"Model '{record.id}' was trained on single texts; input {index} has a text_pair.",
            )
        texts.append(text)
        if pair is not None:
            pairs.append(pair)
    return texts, (pairs if record.text_pair else None)
