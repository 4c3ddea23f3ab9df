"""The `spearmanr` metric for `evaluate.load(path)`; defined in worker/metric_modules/_base.py."""

from worker.metric_modules._base import metric_class

Spearmanr = metric_class("spearmanr")
