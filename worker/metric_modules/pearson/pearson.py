"""The `pearson` metric for `evaluate.load(path)`; defined in worker/metric_modules/_base.py."""

from worker.metric_modules._base import metric_class

Pearson = metric_class("pearson")
