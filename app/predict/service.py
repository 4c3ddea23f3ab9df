"""Predictions from trained models, loaded once and kept in a bounded cache."""

import asyncio
from functools import lru_cache

from app.core.config import get_settings
from app.core.errors import ApiError
from app.models.locator import trained_model_dir
from app.models.schemas import Prediction, PredictRequest
from app.predict.batcher import MicroBatcher
from app.predict.cache import ModelCache
from app.predict.loaded_model import LoadedModel
from app.tables import TrainedModel


@lru_cache
def get_model_cache() -> ModelCache[LoadedModel]:
    settings = get_settings()

    def load(key: str) -> LoadedModel:
        model_id, precision = key.split(":")
        return LoadedModel.load(trained_model_dir(settings, model_id), precision)

    return ModelCache(settings.model_cache_size, load)


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


_batchers: dict[str, MicroBatcher] = {}


def get_batcher(key: str) -> MicroBatcher:
    """The batcher of a model in one precision ("model_id:precision") on the running event
    loop (a new loop, as in tests, gets new ones)."""
    settings = get_settings()
    batcher = _batchers.get(key)
    if batcher is None or batcher.loop is not asyncio.get_running_loop():
        if batcher is not None:
            batcher.close()
        for idle in [k for k, b in _batchers.items() if b.queue.empty()]:
            if len(_batchers) < 4 * settings.model_cache_size:
                break
            _batchers.pop(idle).close()
        batcher = MicroBatcher(
            lambda: get_model_cache().get(key),
            max_batch=settings.predict_max_batch,
            max_wait_seconds=settings.predict_max_wait_ms / 1000,
        )
        _batchers[key] = batcher
    return batcher


async def predict(
    record: TrainedModel, request: PredictRequest, max_chars: int, precision: str
) -> list[Prediction]:
    """Validated here; labelled in a forward pass shared with concurrent requests for the
    same model in the same precision."""
    texts, pairs = split_inputs(record, request, max_chars)
    labelled = await get_batcher(f"{record.id}:{precision}").predict(texts, pairs)
    return [Prediction(label=label, scores=scores) for label, scores in labelled]
