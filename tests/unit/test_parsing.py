from pathlib import Path

import pytest

from app.files.parsing import FileParseError, format_from_filename, read_table
from tests.conftest import SHARED_DATA

MRPC_LIKE = (
    "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    '1\t1\t2\tHe said " the witness " lied .\tThe "witness lied, he said .\n'
    "0\t3\t4\tShares rose 5 % .\tShares fell .\n"
)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_tsv_with_bom_and_unbalanced_quotes(tmp_path: Path) -> None:
    frame = read_table(write(tmp_path, "a.tsv", MRPC_LIKE), "tsv")
    assert list(frame.columns) == ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    assert len(frame) == 2
    assert frame.loc[0, "#2 String"] == 'The "witness lied, he said .'
    assert frame.loc[1, "Quality"] == "0"


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")
def test_real_mrpc_files_load_completely() -> None:
    train = read_table(SHARED_DATA / "glue/MRPC/train.tsv", "tsv")
    dev = read_table(SHARED_DATA / "glue/MRPC/dev.tsv", "tsv")
    assert (len(train), len(dev)) == (3668, 408)
    assert train.columns[0] == "Quality"
    assert set(dev["Quality"]) == {"0", "1"}
    assert (dev["Quality"] == "1").sum() == 279


def test_csv_keeps_quoted_commas(tmp_path: Path) -> None:
    frame = read_table(write(tmp_path, "a.csv", 'text,label\n"a, b",pos\nc,neg\n'), "csv")
    assert frame["text"].tolist() == ["a, b", "c"]


def test_jsonl_scalars_become_text(tmp_path: Path) -> None:
    content = '{"text": "hi", "label": 1}\n\n{"text": "yo", "label": 0}\n'
    frame = read_table(write(tmp_path, "a.jsonl", content), "jsonl")
    assert frame["label"].tolist() == ["1", "0"]


@pytest.mark.parametrize(
    ("name", "content", "fmt", "message"),
    [
        ("empty.csv", "", "csv", "empty"),
        ("header.csv", "a,b\n", "csv", "no rows"),
        ("ragged.csv", "a,b\n1,2\n3,4,5\n", "csv", "Line 3 has 3 fields"),
        ("short.tsv", "a\tb\n1\n", "tsv", "Line 2 has 1 fields"),
        ("long.csv", "a,b\n1,2,3\n", "csv", "Line 2 has 3"),
        ("bad.jsonl", '{"a": 1}\n{"a": \n', "jsonl", "Line 2"),
        ("list.jsonl", "[1, 2]\n", "jsonl", "not a JSON object"),
        ("latin1.csv", b"a,b\n\xe9t\xe9,1\n", "csv", "not valid UTF-8"),
        ("dup.csv", "a,a\n1,2\n", "csv", "duplicate"),
    ],
)
def test_bad_files_raise_readable_errors(
    tmp_path: Path, name: str, content: str | bytes, fmt: str, message: str
) -> None:
    with pytest.raises(FileParseError, match=message):
        read_table(write(tmp_path, name, content), fmt)


def test_format_from_filename() -> None:
    assert format_from_filename("train.TSV") == "tsv"
    assert format_from_filename("x.jsonl") == "jsonl"
    assert format_from_filename("x.parquet") is None
