"""The `matthews_correlation` metric for `evaluate.load(path)`; defined in worker/metric_modules/_base.py."""

from worker.metric_modules._base import metric_class

MatthewsCorrelation = metric_class("matthews_correlation")
