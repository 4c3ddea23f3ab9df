"""Predict micro-batching with a fake model: batches, order, errors, limits."""

import asyncio
import threading
import time
from typing import Any

import pytest

from app.predict.batcher import MicroBatcher


class FakeModel:
    """Labels each text by its length; records the size of every forward pass."""

    def __init__(self, seconds: float = 0.0, fail_on: str | None = None) -> None:
        self.seconds = seconds
        self.fail_on = fail_on
        self.batches: list[list[str]] = []

    def predict(
        self, texts: list[str], pairs: list[str] | None
    ) -> list[tuple[str, dict[str, float]]]:
        self.batches.append(list(texts))
        if self.fail_on in texts:
            raise RuntimeError("forward failed")
        time.sleep(self.seconds)
        return [(str(len(t)), {"pair": float(bool(pairs))}) for t in texts]


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_a_lone_request_runs_at_once() -> None:
    model = FakeModel()

    async def scenario() -> tuple[Any, float]:
        batcher = MicroBatcher(lambda: model, max_batch=64, max_wait_seconds=5.0)  # type: ignore[arg-type, return-value]
        started = time.perf_counter()
        result = await batcher.predict(["abc"], None)
        elapsed = time.perf_counter() - started
        batcher.close()
        return result, elapsed

    result, elapsed = run(scenario())
    assert result == [("3", {"pair": 0.0})]
    assert elapsed < 1.0  # not the 5 s wait bound


def test_concurrent_requests_share_forward_passes_and_get_their_own_answers() -> None:
    model = FakeModel(seconds=0.05)

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(lambda: model, max_batch=64, max_wait_seconds=0.01)  # type: ignore[arg-type, return-value]
        texts = [["x" * (i + 1), "y" * (i + 2)] for i in range(20)]
        results = await asyncio.gather(*(batcher.predict(t, None) for t in texts))
        batcher.close()
        return list(results)

    results = run(scenario())
    for i, result in enumerate(results):
        assert [label for label, _ in result] == [str(i + 1), str(i + 2)]
    assert len(model.batches) < 20 / 2  # 20 requests, far fewer passes
    assert max(len(b) for b in model.batches) > 2


def test_max_batch_bounds_a_pass() -> None:
    model = FakeModel(seconds=0.02)

    async def scenario() -> None:
        batcher = MicroBatcher(lambda: model, max_batch=4, max_wait_seconds=0.01)  # type: ignore[arg-type, return-value]
        await asyncio.gather(*(batcher.predict([str(i)], None) for i in range(17)))
        batcher.close()

    run(scenario())
    assert sum(len(b) for b in model.batches) == 17
    assert max(len(b) for b in model.batches) <= 4


def test_an_error_reaches_every_request_of_its_batch_only() -> None:
    model = FakeModel(seconds=0.02, fail_on="bad")

    async def scenario() -> tuple[list[Any], Any]:
        batcher = MicroBatcher(lambda: model, max_batch=64, max_wait_seconds=0.01)  # type: ignore[arg-type, return-value]
        outcomes = await asyncio.gather(
            *(batcher.predict([t], None) for t in ("a", "bad", "c")), return_exceptions=True
        )
        after = await batcher.predict(["fine"], ["pair"])
        batcher.close()
        return list(outcomes), after

    outcomes, after = run(scenario())
    assert model.batches[0] == ["a", "bad", "c"]
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert after == [("4", {"pair": 1.0})]  # the batcher lives on


@pytest.mark.parametrize("count", [1, 5])
def test_pairs_travel_with_their_texts(count: int) -> None:
    model = FakeModel(seconds=0.01)

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(lambda: model, max_batch=64, max_wait_seconds=0.01)  # type: ignore[arg-type, return-value]
        results = await asyncio.gather(
            *(batcher.predict(["t" * (i + 1)], ["p"]) for i in range(count))
        )
        batcher.close()
        return list(results)

    results = run(scenario())
    assert [r[0][0] for r in results] == [str(i + 1) for i in range(count)]


def test_every_batcher_runs_its_passes_on_one_shared_thread() -> None:
    threads: list[int] = []

    class ThreadRecordingModel(FakeModel):
        def predict(
            self, texts: list[str], pairs: list[str] | None
        ) -> list[tuple[str, dict[str, float]]]:
            threads.append(threading.get_ident())
            return super().predict(texts, pairs)

    first, second = ThreadRecordingModel(), ThreadRecordingModel()

    async def scenario() -> None:
        batchers = [
            MicroBatcher(lambda m=m: m, max_batch=64, max_wait_seconds=0.0)  # type: ignore[misc]
            for m in (first, second)
        ]
        await asyncio.gather(*(b.predict([str(i)], None) for i in range(4) for b in batchers))
        for batcher in batchers:
            batcher.close()

    run(scenario())
    assert first.batches and second.batches
    assert len(set(threads)) == 1 and threads[0] != threading.get_ident()
