"""Task kinds: inference from the train split, label names, targets (worker/tasks.py)."""

import pandas as pd
import pytest

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
