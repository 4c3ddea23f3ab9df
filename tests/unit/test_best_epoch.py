"""Choosing the best epoch and early stopping (worker/callbacks.py BestEpoch)."""

from worker.callbacks import BestEpoch


def test_ties_keep_the_earlier_epoch_and_losses_go_down() -> None:
    selection = BestEpoch("eval_loss", greater_is_better=False)
    for epoch, loss in ((1, 0.46), (2, 0.50), (3, 0.46)):
        selection.add(epoch, {"accuracy": 0.8}, loss)
    assert selection.best == 1


def test_a_metric_that_should_grow() -> None:
    selection = BestEpoch("accuracy", greater_is_better=True)
    for epoch, accuracy in ((1, 0.7), (2, 0.8), (3, 0.75)):
        selection.add(epoch, {"accuracy": accuracy}, 0.5)
    assert selection.best == 2
    assert selection.metrics[2] == {"accuracy": 0.8, "eval_loss": 0.5}


def test_patience_counts_evaluations_without_improvement_beyond_the_threshold() -> None:
    selection = BestEpoch("accuracy", True, patience=2, threshold=0.01)
    selection.add(1, {"accuracy": 0.70}, None)
    selection.add(2, {"accuracy": 0.705}, None)  # better, but not by more than 0.01
    assert not selection.should_stop()
    selection.add(3, {"accuracy": 0.69}, None)
    assert selection.should_stop()
    assert selection.best == 2  # the best is still chosen without the threshold


def test_no_patience_never_stops() -> None:
    selection = BestEpoch("eval_loss", False)
    for epoch in range(1, 10):
        selection.add(epoch, {}, float(epoch))
    assert not selection.should_stop()
