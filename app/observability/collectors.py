"""Helpers shared by the API's and the worker's registries."""

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector


def add_runtime_collectors(registry: CollectorRegistry) -> None:
    """The process_*, python_gc_* and python_info series of the default registry."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
