"""Predict micro-batching with a fake model: batches, order, errors, limits, one thread."""

import asyncio
import threading
import time
from typing import Any

import pytest

from app.predict.batcher import Batcher

Labelled = list[tuple[str, dict[str, float]]]


class FakeModel:
    """Labels each text by its length; records every forward pass. `hold` keeps a pass over
    a text "hold" inside the model until released, so a test can queue work behind it."""

    def __init__(self, seconds: float = 0.0, fail_on: str | None = None) -> None:
        self.seconds = seconds
        self.fail_on = fail_on
        self.batches: list[list[str]] = []
        self.threads: set[int] = set()
        self.holding = threading.Event()
        self.release = threading.Event()

    def predict(self, texts: list[str], pairs: list[str] | None) -> Labelled:
        self.batches.append(list(texts))
        self.threads.add(threading.get_ident())
        if "hold" in texts:
            self.holding.set()
            assert self.release.wait(10)
        if self.fail_on in texts:
            raise RuntimeError("forward failed")
        time.sleep(self.seconds)
        return [(str(len(t)), {"pair": float(bool(pairs))}) for t in texts]


def batcher_of(model: Any, max_batch: int = 64, max_wait_seconds: float = 0.01) -> Batcher:
    return Batcher(lambda key: model, max_batch, max_wait_seconds, 100_000, 100_000)


async def hold_thread(batcher: Batcher, model: FakeModel, key: str = "m") -> "asyncio.Future[Any]":
    """Occupy the forward thread with a pass that waits for `model.release`."""
    held = batcher.submit("t", key, ["hold"], None)
    while not model.holding.is_set():
        await asyncio.sleep(0.005)
    return held


def test_a_lone_request_runs_at_once() -> None:
    model = FakeModel()

    async def scenario() -> tuple[Any, float]:
        batcher = batcher_of(model, 64, 5.0)
        started = time.perf_counter()
        result = await batcher.predict("t", "m", ["abc"], None)
        elapsed = time.perf_counter() - started
        batcher.close()
        return result, elapsed

    result, elapsed = asyncio.run(scenario())
    assert result == [("3", {"pair": 0.0})]
    assert elapsed < 1.0  # not the 5 s wait bound


def test_concurrent_requests_share_forward_passes_and_get_their_own_answers() -> None:
    model = FakeModel(seconds=0.05)

    async def scenario() -> list[Any]:
        batcher = batcher_of(model, 64, 0.01)
        texts = [["x" * (i + 1), "y" * (i + 2)] for i in range(20)]
        results = await asyncio.gather(*(batcher.predict("t", "m", t, None) for t in texts))
        batcher.close()
        return list(results)

    results = asyncio.run(scenario())
    for i, result in enumerate(results):
        assert [label for label, _ in result] == [str(i + 1), str(i + 2)]
    assert len(model.batches) < 20 / 2  # 20 requests, far fewer passes
    assert max(len(b) for b in model.batches) > 2


def test_max_batch_bounds_a_pass_and_splits_a_big_request() -> None:
    model = FakeModel(seconds=0.02)

    async def scenario() -> Any:
        batcher = batcher_of(model, 4, 0.01)
        small = asyncio.gather(*(batcher.predict("t", "m", [str(i)], None) for i in range(7)))
        big = await batcher.predict("t", "m", ["a" * (i + 1) for i in range(10)], None)
        await small
        batcher.close()
        return big

    big = asyncio.run(scenario())
    assert sum(len(b) for b in model.batches) == 17
    assert max(len(b) for b in model.batches) <= 4
    assert [label for label, _ in big] == [str(i + 1) for i in range(10)]  # in order


def test_long_inputs_make_smaller_passes() -> None:
    model = FakeModel()

    async def scenario() -> Any:
        batcher = Batcher(lambda key: model, 64, 0.0, 100_000, 100_000, max_batch_chars=3000)
        texts = ["x" * 1000] * 7 + ["y" * 5000, "z"]
        labelled = await batcher.predict("t", "m", texts, None)
        batcher.close()
        return labelled

    labelled = asyncio.run(scenario())
    assert [len(b) for b in model.batches] == [3, 3, 1, 1, 1]  # one input over the budget alone
    assert [label for label, _ in labelled] == ["1000"] * 7 + ["5000", "1"]


def test_an_error_reaches_every_request_of_its_batch_only() -> None:
    model = FakeModel(seconds=0.02, fail_on="bad")

    async def scenario() -> tuple[list[Any], Any]:
        batcher = batcher_of(model, 64, 0.01)
        held = await hold_thread(batcher, model)
        outcomes = [batcher.submit("t", "m", [t], None) for t in ("a", "bad", "c")]
        model.release.set()
        await held
        results = await asyncio.gather(*outcomes, return_exceptions=True)
        after = await batcher.predict("t", "m", ["fine"], ["pair"])
        batcher.close()
        return list(results), after

    outcomes, after = asyncio.run(scenario())
    assert model.batches[1] == ["a", "bad", "c"]
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert after == [("4", {"pair": 1.0})]  # the batcher lives on


@pytest.mark.parametrize("count", [1, 5])
def test_pairs_travel_with_their_texts(count: int) -> None:
    model = FakeModel(seconds=0.01)

    async def scenario() -> list[Any]:
        batcher = batcher_of(model, 64, 0.01)
        results = await asyncio.gather(
            *(batcher.predict("t", "m", ["t" * (i + 1)], ["p"]) for i in range(count))
        )
        batcher.close()
        return list(results)

    results = asyncio.run(scenario())
    assert [r[0][0] for r in results] == [str(i + 1) for i in range(count)]


def test_every_model_runs_its_passes_on_the_one_forward_thread() -> None:
    first, second = FakeModel(), FakeModel()

    async def scenario() -> None:
        batcher = Batcher(lambda key: first if key == "a" else second, 64, 0.0, 100_000, 100_000)
        await asyncio.gather(
            *(batcher.predict("t", key, [str(i)], None) for i in range(4) for key in "ab")
        )
        batcher.close()

    asyncio.run(scenario())
    assert first.batches and second.batches
    threads = first.threads | second.threads
    assert len(threads) == 1 and threading.get_ident() not in threads


def test_calls_run_on_the_forward_thread_and_close_fails_what_waits() -> None:
    model = FakeModel()

    async def scenario() -> tuple[int, Any]:
        batcher = batcher_of(model)
        thread = batcher.call(threading.get_ident).result(timeout=5)
        held = await hold_thread(batcher, model)
        waiting = batcher.submit("t", "m", ["late"], None)
        batcher.close()
        model.release.set()
        await held  # the pass in flight still answers
        outcome = await asyncio.gather(waiting, return_exceptions=True)
        return thread, outcome[0]

    thread, outcome = asyncio.run(scenario())
    assert model.threads == {thread}
    assert type(outcome).__name__ == "BatcherClosed"
