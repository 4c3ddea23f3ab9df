"""Metric modules for `evaluate`, loaded by path (worker/metrics.py); their body is _base.py."""
