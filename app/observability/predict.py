"""Predict metrics: batch sizes and forward-pass latency, one process-wide pair of histograms.

They are registered in no registry here; each API app registers them in its own (see
app.observability.api), so several apps in one process (tests) share them without clashing.
"""

from prometheus_client import Histogram

PREDICT_BATCH_SIZE = Histogram(
    "tuneserve_predict_batch_size",
    "Inputs per predict forward pass (concurrent requests of a model share passes).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    registry=None,
)
PREDICT_DURATION = Histogram(
    "tuneserve_predict_duration_seconds",
    "Wall time of one predict batch: tokenization and forward pass, model loading excluded.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=None,
)


def observe_predict(batch_size: int, seconds: float) -> None:
    """Record one forward pass over `batch_size` inputs that took `seconds`."""
    PREDICT_BATCH_SIZE.observe(batch_size)
    PREDICT_DURATION.observe(seconds)
