import pandas as pd
import pytest

from worker.data import check_labels, label_names
from worker.errors import JobFailure


def test_integer_labels_sort_numerically() -> None:
    assert label_names(pd.Series(["10", "2", "1", "2"]), 100) == ["1", "2", "10"]


def test_text_labels_sort_alphabetically() -> None:
    assert label_names(pd.Series(["pos", "neg", "pos"]), 100) == ["neg", "pos"]


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
        label_names(pd.Series(values), 10)
    assert info.value.code == "invalid_labels"


def test_validation_labels_must_be_known() -> None:
    with pytest.raises(JobFailure, match="lacks"):
        check_labels(pd.Series(["a", "c"]), ["a", "b"])
