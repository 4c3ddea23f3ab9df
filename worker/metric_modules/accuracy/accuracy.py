"""The `accuracy` metric for `evaluate.load(path)`; defined in worker/metric_modules/_base.py."""

from worker.metric_modules._base import metric_class

Accuracy = metric_class("accuracy")
