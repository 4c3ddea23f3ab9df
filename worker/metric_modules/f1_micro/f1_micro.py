"""The `f1_micro` metric for `evaluate.load(path)`; defined in worker/metric_modules/_base.py."""

from worker.metric_modules._base import metric_class

F1Micro = metric_class("f1_micro")
