"""The `subset_accuracy` metric for `evaluate.load(path)`; defined in worker/metric_modules/_base.py."""

from worker.metric_modules._base import metric_class

SubsetAccuracy = metric_class("subset_accuracy")
