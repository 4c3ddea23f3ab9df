"""Task kinds: inference from the train split, label names, targets (worker/tasks.py)."""

import pandas as pd
import pytest
import torch

from app.jobs.schemas import JobSpec
from worker.errors import JobFailure
from worker.tasks import MultiLabel, Regression, SingleLabel, split_labels, task_for


def spec(**changes: object) -> JobSpec:
    body = {
        "base_model": "tiny",
        "dataset": {"source": "files", "train_file_id": "file_a"},
        "text_column": "text",
        "label_column": "label",
        **changes,
    }
    return JobSpec.model_validate(body)


def frame(labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"text": ["x"] * len(labels), "label": labels})


def test_fractional_numbers_are_regression_and_integers_stay_labels() -> None:
    task = task_for(spec(), frame(["0.5", "3.2", "4"]), 100)
    assert isinstance(task, Regression)
    assert task.head()["num_labels"] == 1 and task.head()["problem_type"] == "regression"
    assert task.targets(pd.Series(["1.5"]), "train") == [1.5]
    labels = task_for(spec(), frame(["10", "2", "1"]), 100)
    assert isinstance(labels, SingleLabel) and labels.labels == ["1", "2", "10"]


def test_a_non_number_in_a_regression_column_names_its_row() -> None:
    task = task_for(spec(task="regression"), frame(["0.5", "1.5"]), 100)
    with pytest.raises(JobFailure) as failure:
        task.targets(pd.Series(["0.5", "high"]), "validation")
    assert failure.value.code == "invalid_labels" and "row 2" in failure.value.message


def test_multi_label_from_json_arrays_or_a_delimiter_with_empty_rows() -> None:
    task = task_for(spec(), frame(['["b", "a"]', '["a"]', "[]"]), 100)
    assert isinstance(task, MultiLabel) and task.labels == ["a", "b"]
    assert task.targets(pd.Series(['["b"]', "[]"]), "train") == [[0.0, 1.0], [0.0, 0.0]]
    delimited = task_for(spec(label_delimiter=","), frame(["4,27", "27", ""]), 100)
    assert delimited.raw == ["4", "27"]
    assert delimited.head()["problem_type"] == "multi_label_classification"
    assert split_labels(" 4, 27 ", ",") == ["4", "27"]


def test_label_names_name_the_head_and_predictions() -> None:
    task = task_for(
        spec(label_names={"0": "not_equivalent", "1": "equivalent"}), frame(["1", "0"]), 100
    )
    assert task.labels == ["not_equivalent", "equivalent"]
    assert task.head()["id2label"] == {0: "not_equivalent", 1: "equivalent"}
    assert task.targets(pd.Series(["1", "0"]), "train") == [1, 0]


def test_metrics_must_fit_the_task() -> None:
    with pytest.raises(ValueError, match="do not apply"):
        spec(task="regression", metrics=["accuracy"])
    assert spec(task="regression").metric_names() == ["pearson", "spearmanr", "mse", "mae"]
    assert spec(task="regression").best_metric() == ("pearson", True)
    assert spec(task="regression", metrics=["mse"]).best_metric() == ("mse", False)
    assert spec().metric_names("multi_label_classification")[0] == "f1_micro"


def test_unusable_label_columns_fail_with_invalid_labels() -> None:
    for labels in (["a", "a"], ["a", ""]):
        with pytest.raises(JobFailure) as failure:
            task_for(spec(), frame(labels), 100)
        assert failure.value.code == "invalid_labels"
    with pytest.raises(JobFailure):
        task_for(spec(), frame([str(i) for i in range(20)]), 10)


def test_balanced_single_label_weights_are_scikit_learns() -> None:
    task = task_for(spec(), frame(["0"] * 9 + ["1"]), 100)
    loss = task.balanced_loss(task.targets(frame(["0"] * 9 + ["1"])["label"], "train"))
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    weights = torch.tensor([10 / (2 * 9), 10 / (2 * 1)])  # n_samples / (n_classes * count)
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=weights)
    assert torch.allclose(loss({"logits": logits}, labels), expected)


def test_balanced_multi_label_weighs_each_labels_positives_by_its_rarity() -> None:
    """Inferred multi-label jobs with class_weights got the single-label cross-entropy, which
    cannot take a row of several labels: every attempt crashed."""
    rows = ["a"] * 8 + ["a,b"] + [""] * 191  # a: 9 of 200 rows, b: 1 of 200
    task = task_for(
        spec(label_delimiter=",", hyperparameters={"class_weights": "balanced"}), frame(rows), 100
    )
    assert isinstance(task, MultiLabel)
    targets = task.targets(frame(rows)["label"], "train")
    loss = task.balanced_loss(targets)
    logits = torch.tensor([[0.3, -2.0], [-1.0, 0.5]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    pos_weight = torch.tensor([191 / 9, 100.0])  # b's 199 is capped at MAX_POS_WEIGHT
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, labels, pos_weight=pos_weight
    )
    assert torch.allclose(loss({"logits": logits}, labels), expected)
    # A missed rare positive costs more than a missed common one.
    miss_a = loss({"logits": torch.tensor([[-3.0, -3.0]])}, torch.tensor([[1.0, 0.0]]))
    miss_b = loss({"logits": torch.tensor([[-3.0, -3.0]])}, torch.tensor([[0.0, 1.0]]))
    assert miss_b > miss_a


def test_class_weights_on_regression_fail_clearly() -> None:
    with pytest.raises(ValueError, match="not regression"):
        spec(task="regression", hyperparameters={"class_weights": "balanced"})
    task = task_for(spec(hyperparameters={"class_weights": "balanced"}), frame(["0.5", "1.5"]), 100)
    with pytest.raises(JobFailure) as failure:
        task.balanced_loss([0.5, 1.5])
    assert failure.value.code == "invalid_spec"
