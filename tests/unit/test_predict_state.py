"""The predict service's state: no hang on eviction, bounded queues, gone clients, fairness."""

import asyncio
import os
import sys
import threading
import time
from typing import Any

import pytest
import torch

from app.core.errors import ApiError
from app.predict.service import PredictService, forward_threads

Labelled = list[tuple[str, dict[str, float]]]


class Model:
    """Records each pass as (key, texts); a pass over "hold" waits for `release`."""

    def __init__(self, key: str, passes: list[tuple[str, list[str]]], gate: "Gate") -> None:
        self.key, self.passes, self.gate = key, passes, gate

    def predict(self, texts: list[str], pairs: list[str] | None) -> Labelled:
        self.passes.append((self.key, list(texts)))
        if "hold" in texts:
            self.gate.holding.set()
            assert self.gate.release.wait(10)
        return [(self.key, {"len": float(len(t))}) for t in texts]


class Gate:
    def __init__(self) -> None:
        self.holding, self.release = threading.Event(), threading.Event()


def service_of(
    passes: list[tuple[str, list[str]]],
    gate: Gate,
    loads: list[str] | None = None,
    cache_size: int = 4,
    max_batch: int = 64,
    per_model: int = 100_000,
    total: int = 100_000,
) -> PredictService:
    def load(key: str) -> Model:
        if loads is not None:
            loads.append(key)
        return Model(key, passes, gate)

    return PredictService(load, cache_size, max_batch, 0.0, per_model, total)


async def hold(service: PredictService, gate: Gate, key: str = "held:fp32") -> "asyncio.Task[Any]":
    """Put a pass in flight that stays inside the model until `gate.release`."""
    task = asyncio.ensure_future(service.label("tenant-h", key, ["hold"], None))
    while not gate.holding.is_set():
        await asyncio.sleep(0.005)
    return task


def test_a_pass_in_flight_answers_although_its_model_and_queue_are_evicted() -> None:
    """Issue 13, defect 4: the old per-model batcher, evicted when its queue looked empty while
    its batch was in the forward pass, cancelled its task and the request hung forever."""
    passes: list[tuple[str, list[str]]] = []
    gate, loads = Gate(), list[str]()

    async def scenario() -> Any:
        service = service_of(passes, gate, loads, cache_size=1)
        in_flight = await hold(service, gate, "m0:fp32")
        others = [
            asyncio.ensure_future(service.label("t", f"m{i}:fp32", ["x"], None))
            for i in range(1, 80)  # more models than the cache and the queue table keep
        ]
        await asyncio.sleep(0.05)
        gate.release.set()
        answers = await asyncio.wait_for(asyncio.gather(in_flight, *others), 10)
        service.close()
        return answers

    answers = asyncio.run(scenario())
    assert answers[0] == [("m0:fp32", {"len": 4.0})]
    assert [a[0][0] for a in answers[1:]] == [f"m{i}:fp32" for i in range(1, 80)]
    assert loads.count("m0:fp32") == 1  # evicted from the cache only after its pass


def test_full_queues_are_refused_with_retry_after() -> None:
    passes: list[tuple[str, list[str]]] = []
    gate = Gate()

    async def scenario() -> tuple[ApiError, ApiError, list[Any]]:
        service = service_of(passes, gate, per_model=4, total=6)
        held = await hold(service, gate)
        accepted = [asyncio.ensure_future(service.label("a", "a:fp32", ["1", "2", "3"], None))]
        accepted.append(asyncio.ensure_future(service.label("a", "a:fp32", ["4"], None)))
        await asyncio.sleep(0)
        with pytest.raises(ApiError) as model_full:
            await service.label("a", "a:fp32", ["5"], None)
        # What the admission middleware asks before reading a body: only A's model is full,
        # and only for A (another tenant naming A's model id learns nothing from it).
        early = service.refusal("a", "a")
        assert early is not None and early.status_code == 429
        assert service.refusal("b", "a") is None and service.refusal("a", "other") is None
        accepted.append(asyncio.ensure_future(service.label("b", "b:fp32", ["1", "2"], None)))
        await asyncio.sleep(0)
        with pytest.raises(ApiError) as process_full:
            await service.label("c", "c:fp32", ["1"], None)
        gate.release.set()
        answers = await asyncio.wait_for(asyncio.gather(held, *accepted), 10)
        # Drained: the same request is taken now.
        answers.append(await service.label("a", "a:fp32", ["5"], None))
        service.close()
        return model_full.value, process_full.value, answers

    model_full, process_full, answers = asyncio.run(scenario())
    assert (model_full.status_code, model_full.code) == (429, "predict_overloaded")
    assert (process_full.status_code, process_full.code) == (503, "predict_overloaded")
    for error in (model_full, process_full):
        assert error.headers == {"Retry-After": "1"}
    assert len(answers) == 5


def test_inputs_of_gone_clients_are_never_run() -> None:
    passes: list[tuple[str, list[str]]] = []
    gate = Gate()

    async def scenario() -> tuple[ApiError, list[Any], int]:
        service = service_of(passes, gate, per_model=3)
        held = await hold(service, gate)
        hung_up = asyncio.Event()
        gone = asyncio.ensure_future(
            service.label("a", "a:fp32", ["gone-1", "gone-2"], None, client_gone=hung_up.wait)
        )
        cancelled = asyncio.ensure_future(service.label("a", "a:fp32", ["cancelled"], None))
        await asyncio.sleep(0.01)
        hung_up.set()
        cancelled.cancel()
        with pytest.raises(ApiError) as error:
            await gone
        # Their places in the bounded queue are free again.
        kept = asyncio.ensure_future(service.label("a", "a:fp32", ["kept", "k2", "k3"], None))
        await asyncio.sleep(0)
        queued = service.batcher.queued
        gate.release.set()
        answers = await asyncio.wait_for(asyncio.gather(held, kept), 10)
        service.close()
        return error.value, list(answers), queued

    error, answers, queued = asyncio.run(scenario())
    assert (error.status_code, error.code) == (499, "client_disconnected")
    assert queued == 3
    assert answers[1] == [("a:fp32", {"len": float(len(t))}) for t in ("kept", "k2", "k3")]
    ran = [text for _, texts in passes for text in texts]
    assert not {"gone-1", "gone-2", "cancelled"} & set(ran)


def test_a_lone_request_of_another_tenant_is_not_queued_behind_a_flood() -> None:
    passes: list[tuple[str, list[str]]] = []
    gate = Gate()

    async def scenario() -> None:
        service = service_of(passes, gate, max_batch=64)
        held = await hold(service, gate)
        # Tenant A: eight 256-input requests on two models (32 passes of 64); then tenant B.
        flood = [
            asyncio.ensure_future(
                service.label("a", f"a{i % 2}:fp32", [f"a{i}-{j}" for j in range(256)], None)
            )
            for i in range(8)
        ]
        await asyncio.sleep(0)
        lone = asyncio.ensure_future(service.label("b", "b:fp32", ["b"], None))
        await asyncio.sleep(0)
        gate.release.set()
        await asyncio.wait_for(asyncio.gather(held, lone, *flood), 10)
        service.close()

    asyncio.run(scenario())
    assert len(passes) == 1 + 8 * 256 // 64 + 1
    # B's pass comes after at most one of A's (after the held pass), not after all 32.
    assert passes.index(("b:fp32", ["b"])) <= 2


def parked(service: PredictService, within: float = 5.0) -> bool:
    """Whether the forward thread comes to block in a condition wait (not spinning) within
    `within` seconds and stays there for 20 samples in a row. A thread just done with a pass
    may take a moment to get there on a loaded machine; a spinning one never stays."""
    thread = service.batcher._thread
    assert thread.ident is not None and thread.is_alive()
    deadline = time.monotonic() + within
    streak = 0
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident)
        names = []
        while frame is not None:
            names.append((frame.f_code.co_name, frame.f_code.co_filename))
            frame = frame.f_back
        waiting = any(name == "wait" and file == threading.__file__ for name, file in names)
        streak = streak + 1 if waiting else 0
        if streak >= 20:
            return True
        time.sleep(0.005)
    return False


def closed_promptly(service: PredictService) -> bool:
    closer = threading.Thread(target=service.close, daemon=True)
    closer.start()
    closer.join(10)
    return not closer.is_alive()


def test_tenants_on_one_model_key_leave_the_thread_idle_and_close_returns() -> None:
    """A queue was per key, made with the first tenant's name: a second tenant's turn on the
    same key was never taken back, so the thread spun in `_next_pass` holding the lock and
    close() hung. Each tenant's inputs also counted against the other's bound."""
    passes: list[tuple[str, list[str]]] = []
    gate = Gate()

    async def scenario() -> tuple[list[Any], bool, bool]:
        service = service_of(passes, gate, per_model=2)
        held = await hold(service, gate)  # tenant-h on held:fp32
        other = asyncio.ensure_future(service.label("b", "held:fp32", ["b1", "b2"], None))
        await asyncio.sleep(0)
        assert service.refusal("tenant-h", "held") is None  # B's inputs are B's
        refused = service.refusal("b", "held")
        assert refused is not None and refused.status_code == 429
        gate.release.set()
        answers = list(await asyncio.wait_for(asyncio.gather(held, other), 10))
        idle = parked(service)
        return answers, idle, closed_promptly(service)

    answers, idle, closed = asyncio.run(scenario())
    assert answers[1] == [("held:fp32", {"len": 2.0})] * 2
    assert idle and closed


def test_an_idle_service_waits_without_spinning() -> None:
    passes: list[tuple[str, list[str]]] = []
    gate = Gate()

    async def scenario() -> tuple[bool, bool, bool]:
        service = PredictService(
            lambda key: Model(key, passes, gate), 4, 64, 0.02, 100_000, 100_000
        )
        fresh = parked(service)
        # Several requests per pass, so the next pass waits up to max_wait for more first.
        for _ in range(3):
            await asyncio.gather(*(service.label(t, "m:fp32", ["x"], None) for t in "aab"))
        await asyncio.sleep(0.05)  # past max_wait
        return fresh, parked(service), closed_promptly(service)

    assert asyncio.run(scenario()) == (True, True, True)


def test_close_answers_every_queued_request() -> None:
    passes: list[tuple[str, list[str]]] = []
    gate = Gate()

    async def scenario() -> list[Any]:
        service = service_of(passes, gate, max_batch=2)
        held = await hold(service, gate)
        queued = [
            asyncio.ensure_future(service.label(t, k, ["1", "2", "3"], None))
            for t, k in (("tenant-h", "held:fp32"), ("b", "held:fp32"), ("b", "other:fp32"))
        ]
        await asyncio.sleep(0)
        closer = threading.Thread(target=service.close, daemon=True)
        closer.start()  # returns once the pass in flight is done
        outcomes = await asyncio.wait_for(asyncio.gather(*queued, return_exceptions=True), 10)
        gate.release.set()
        outcomes.append(await asyncio.wait_for(held, 10))
        closer.join(10)
        assert not closer.is_alive()
        with pytest.raises(ApiError) as late:
            await service.label("b", "held:fp32", ["late"], None)
        outcomes.append(late.value)
        return outcomes

    outcomes = asyncio.run(scenario())
    for error in outcomes[:3] + outcomes[4:]:
        assert isinstance(error, ApiError)
        assert (error.status_code, error.code) == (503, "predict_unavailable")
    assert outcomes[3] == [("held:fp32", {"len": 4.0})]
    assert passes == [("held:fp32", ["hold"])]


def test_the_forward_pass_leaves_a_core_to_the_event_loop() -> None:
    """A long pass on every core starved the event loop: another tenant's one-input predict
    waited 7x its idle time behind a flood (bench/hostile_tenant.py)."""
    cores = len(os.sched_getaffinity(0))
    assert forward_threads(0) == max(1, cores - 1)
    assert forward_threads(3) == 3
    service = PredictService(lambda key: Model(key, [], Gate()), 4, 64, 0.0, 10, 10, threads=0)
    try:
        assert service.batcher.call(torch.get_num_threads).result(5) == max(1, cores - 1)
    finally:
        assert closed_promptly(service)
