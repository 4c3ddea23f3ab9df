"""Single-label classification's label names (worker/tasks.py task_for)."""

import pandas as pd
import pytest

from tests.unit.test_tasks import frame, spec
from worker.errors import JobFailure
from worker.tasks import task_for


def test_integer_labels_sort_numerically() -> None:
    assert task_for(spec(), frame(["10", "2", "1", "2"]), 100).labels == ["1", "2", "10"]


def test_text_labels_sort_alphabetically() -> None:
    assert task_for(spec(), frame(["pos", "neg", "pos"]), 100).labels == ["neg", "pos"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["a", "a"], "only one value"),
        (["a", ""], "empty in train row 2"),
        ([str(i) for i in range(20)], "20 distinct values"),
    ],
)
def test_unusable_labels(values: list[str], message: str) -> None:
    with pytest.raises(JobFailure, match=message) as info:
        task_for(spec(), frame(values), 10)
    assert info.value.code == "invalid_labels"


def test_validation_labels_must_be_known() -> None:
    task = task_for(spec(), frame(["a", "b"]), 10)
    with pytest.raises(JobFailure, match="lacks"):
        task.targets(pd.Series(["a", "c"]), "validation")
