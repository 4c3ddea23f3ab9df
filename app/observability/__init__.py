"""Prometheus metrics: the API's /metrics (HTTP, jobs, predict) and the worker's exporter."""
