"""The `f1_macro` metric for `evaluate.load(path)`; defined in worker/metric_modules/_base.py."""

from worker.metric_modules._base import metric_class

F1Macro = metric_class("f1_macro")
