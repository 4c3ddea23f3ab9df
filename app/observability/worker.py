"""The worker's training metrics, served from the Celery pool process that trains.

`start_worker_metrics_server` runs prometheus_client's HTTP server on the worker's own registry
(from Celery's `worker_process_init`); the training callback feeds a `StepMeter`, and the runner
counts finished jobs. No label names a job: series stay few however many jobs run.
"""

import logging
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from app.observability.collectors import add_runtime_collectors

logger = logging.getLogger(__name__)

WORKER_REGISTRY = CollectorRegistry()
add_runtime_collectors(WORKER_REGISTRY)

TRAIN_SAMPLES_PER_SECOND = Gauge(
    "tuneserve_train_samples_per_second",
    "Training throughput of the job training in this process (the last one when idle): "
    "samples per optimizer step over step wall time, across the last 50 steps.",
    registry=WORKER_REGISTRY,
)
TRAIN_STEP_SECONDS = Histogram(
    "tuneserve_train_step_seconds",
    "Wall time of one optimizer step (forward, backward over the accumulated batches, update).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
    registry=WORKER_REGISTRY,
)
TRAIN_STEPS = Counter(
    "tuneserve_train_steps_total", "Optimizer steps trained.", registry=WORKER_REGISTRY
)
TRAIN_SAMPLES = Counter(
    "tuneserve_train_samples_total",
    "Training samples processed (batch size x gradient accumulation per optimizer step; an "
    "epoch's short last batch counts as full).",
    registry=WORKER_REGISTRY,
)
JOBS_FINISHED = Counter(
    "tuneserve_jobs_finished_total",
    "Training runs this process ended, by outcome: succeeded, failed, cancelled, or retried "
    "(given back to the queue: shutdown or a retryable crash).",
    ["outcome"],
    registry=WORKER_REGISTRY,
)
OUTCOMES = ("succeeded", "failed", "cancelled", "retried")
for _outcome in OUTCOMES:
    JOBS_FINISHED.labels(_outcome)  # every outcome is exported from the start, at 0

_server_port: int | None = None


def start_worker_metrics_server(host: str, port: int) -> bool:
    """Serve WORKER_REGISTRY on host:port once per process; False when disabled or refused."""
    global _server_port
    if port <= 0 or _server_port is not None:
        return False
    try:
        start_http_server(port, addr=host, registry=WORKER_REGISTRY)
    except OSError as exc:  # e.g. the port is taken (a second worker on this machine)
        logger.warning("worker metrics not served on %s:%s: %s", host, port, exc)
        return False
    _server_port = port
    logger.info("worker metrics on http://%s:%s/metrics", host, port)
    return True


def record_job_finished(result: str) -> None:
    """Count how `worker.runner.run_job` ended a claimed job (its result string)."""
    outcome = result.partition(":")[0]  # "failed:<code>" -> "failed"
    outcome = "retried" if outcome == "requeued" else outcome  # Outcome.requeued
    if outcome in OUTCOMES:
        JOBS_FINISHED.labels(outcome).inc()


class StepMeter:
    """Times optimizer steps (step begin to step end) for one training run."""

    def __init__(self, window: int = 50) -> None:
        self.samples_per_step = 0
        self._began: float | None = None
        self._recent: deque[float] = deque(maxlen=window)

    def start(self, samples_per_step: int) -> None:
        """A new training run with this many samples per optimizer step."""
        self.samples_per_step = samples_per_step
        self._began = None
        self._recent.clear()

    def step_begin(self) -> None:
        self._began = time.perf_counter()

    def step_end(self) -> None:
        if self._began is None:
            return
        seconds = time.perf_counter() - self._began
        self._began = None
        TRAIN_STEP_SECONDS.observe(seconds)
        TRAIN_STEPS.inc()
        TRAIN_SAMPLES.inc(self.samples_per_step)
        self._recent.append(seconds)
        elapsed = sum(self._recent)
        if elapsed > 0:
            TRAIN_SAMPLES_PER_SECOND.set(self.samples_per_step * len(self._recent) / elapsed)
