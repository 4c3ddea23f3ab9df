"""Files with no header line: every reader names the columns the same way."""

from pathlib import Path

import pytest

from app.files.parsing import (
    ColumnNamesError,
    FileLimitError,
    FileParseError,
    ParseLimits,
    iter_records,
    read_table,
    scan_table,
)
from tests.conftest import SHARED_DATA

COLA_LIKE = 'gj04\t1\t\tThe sailors rode the breeze.\n\ngj04\t0\t*\tThe "doll wriggled.\n'


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def test_first_line_is_a_row_with_default_names(tmp_path: Path) -> None:
    path = write(tmp_path, "cola.tsv", COLA_LIKE)
    columns = ["column_1", "column_2", "column_3", "column_4"]
    assert scan_table(path, "tsv", header=False).columns == columns
    assert scan_table(path, "tsv", header=False).row_count == 2
    frame = read_table(path, "tsv", header=False)
    assert list(frame.columns) == columns
    assert list(frame["column_2"]) == ["1", "0"]
    assert frame.loc[1, "column_4"] == 'The "doll wriggled.'
    records = list(iter_records(path, "tsv", header=False))
    assert records == frame.to_dict("records")


def test_given_names(tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv", "good movie,pos\nbad film,neg\n")
    names = ["sentence", "label"]
    assert scan_table(path, "csv", header=False, names=names).columns == names
    frame = read_table(path, "csv", header=False, names=names)
    assert frame.to_dict("records") == list(iter_records(path, "csv", False, names))
    assert frame.loc[0, "sentence"] == "good movie"
    # with a header line, stored names are not used: the header names the columns
    assert list(read_table(path, "csv", names=["x", "y"]).columns) == ["good movie", "pos"]


def test_names_must_fit_the_width(tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv", "a,b,c\n")
    with pytest.raises(ColumnNamesError, match="2 column names were given, but the file has 3"):
        scan_table(path, "csv", header=False, names=["x", "y"])


def test_one_line_is_one_row_and_rows_must_keep_the_width(tmp_path: Path) -> None:
    assert scan_table(write(tmp_path, "one.csv", "a,b\n"), "csv", header=False).row_count == 1
    with pytest.raises(FileParseError, match="Line 2 has 3 fields; the first line has 2"):
        scan_table(write(tmp_path, "bad.csv", "a,b\n1,2,3\n"), "csv", header=False)
    with pytest.raises(FileParseError, match="empty"):
        scan_table(write(tmp_path, "blank.csv", "\n\n"), "csv", header=False)


def test_limits_apply_to_the_first_row(tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(FileLimitError) as caught:
        scan_table(path, "csv", ParseLimits(max_columns=2), header=False)
    assert caught.value.code == "too_many_columns"
    with pytest.raises(FileLimitError) as caught:
        scan_table(path, "csv", ParseLimits(max_rows=1), header=False)
    assert caught.value.code == "too_many_rows"


def test_jsonl_has_no_header_to_drop(tmp_path: Path) -> None:
    with pytest.raises(FileParseError, match="JSON Lines"):
        scan_table(write(tmp_path, "a.jsonl", '{"a": 1}\n'), "jsonl", header=False)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")
def test_real_headerless_files() -> None:
    cola = read_table(SHARED_DATA / "glue/CoLA/dev.tsv", "tsv", header=False)
    assert cola.shape == (1043, 4)
    assert (cola["column_2"] == "1").sum() == 721
    names = ["text", "labels", "id"]
    emotions = read_table(SHARED_DATA / "goemotions/dev.tsv", "tsv", header=False, names=names)
    assert len(emotions) == 5426 and list(emotions.columns) == names
    assert emotions["labels"].str.contains(",").any()
