import json
import tracemalloc
from pathlib import Path

import pytest

from app.files.parsing import (
    FileLimitError,
    FileParseError,
    ParseLimits,
    TableSummary,
    format_from_filename,
    read_table,
    scan_table,
)
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


# --- streaming and limits (issue 13: one upload took gigabytes) ----------------------------

LIMITS = ParseLimits(max_rows=3, max_columns=4, max_line_chars=40)


def limit_error(path: Path, fmt: str, limits: ParseLimits = LIMITS) -> FileLimitError:
    with pytest.raises(FileLimitError) as caught:
        scan_table(path, fmt, limits)
    with pytest.raises(FileLimitError) as again:
        read_table(path, fmt, limits)
    assert str(again.value) == str(caught.value)
    return caught.value


def test_scan_gives_the_columns_and_row_count_of_read(tmp_path: Path) -> None:
    cases = [
        ("a.tsv", MRPC_LIKE, "tsv"),
        ("a.csv", 'text,label\n"a, b",pos\n\nc,neg\n', "csv"),
        ("a.jsonl", '{"b": 1}\n\n{"a": "x", "c": [1]}\r\n{"b": 2}', "jsonl"),
    ]
    for name, content, fmt in cases:
        path = write(tmp_path, name, content)
        frame = read_table(path, fmt)
        assert scan_table(path, fmt) == TableSummary(list(frame.columns), len(frame))
    assert list(read_table(tmp_path / "a.jsonl", "jsonl").columns) == ["b", "a", "c"]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_too_many_rows_stops_the_read_at_the_limit(tmp_path: Path, fmt: str) -> None:
    rows = {"csv": "t,l\n" + "x,y\n" * 4, "tsv": "t\tl\n" + "x\ty\n" * 4}
    content = rows.get(fmt, '{"t": "x"}\n' * 4)
    # Read to the end, the bad UTF-8 after the limit would be the error.
    error = limit_error(write(tmp_path, f"a.{fmt}", content.encode() + b"\xff\n"), fmt)
    assert error.code == "too_many_rows"
    assert str(error) == "The file has more than 3 rows; the limit is 3."
    exactly = write(tmp_path, f"b.{fmt}", content.rsplit("\n", 2)[0] + "\n")
    assert scan_table(exactly, fmt, LIMITS).row_count == 3


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_a_line_over_the_limit_is_refused_by_its_number(tmp_path: Path, fmt: str) -> None:
    def line(text: str) -> str:
        return json.dumps({"t": text}) + "\n" if fmt == "jsonl" else f"{text}\n"

    header = "" if fmt == "jsonl" else "t\n"
    fits = line("x" * (40 - len(line(""))))  # exactly 40 characters, its line break included
    assert len(fits) == 40
    assert scan_table(write(tmp_path, f"a.{fmt}", header + fits), fmt, LIMITS).row_count == 1
    too_long = header + fits + line("y" * (41 - len(line(""))))
    error = limit_error(write(tmp_path, f"b.{fmt}", too_long), fmt)
    assert error.code == "line_too_long"
    number = 2 if fmt == "jsonl" else 3
    assert str(error) == f"Line {number} is longer than 40 characters, the limit."


def test_a_line_too_long_is_refused_before_its_end_is_read(tmp_path: Path) -> None:
    # A NUL or a bad byte after the limit's worth of one line: the length is the error.
    for tail in (b"\x00\n", b"\xff\n", b""):
        path = write(tmp_path, "a.tsv", b"t\n" + b"x" * 100 + tail)
        assert limit_error(path, "tsv").code == "line_too_long"


def test_a_quoted_field_over_many_lines_is_refused(tmp_path: Path) -> None:
    # Each line is short; the unbalanced quote makes one record of the rest of the file.
    content = 't,l\n"open,1\n' + "z,2\n" * 100
    error = limit_error(write(tmp_path, "a.csv", content), "csv", ParseLimits(max_line_chars=40))
    assert error.code == "line_too_long"
    assert 'is a closing " missing?' in str(error)
    # Quoted fields over several lines within the limit are fine.
    fine = "t,l\n" + '"two\nlines",1\n' * 50
    frame = read_table(write(tmp_path, "b.csv", fine), "csv", ParseLimits(max_line_chars=40))
    assert frame["t"].tolist() == ["two\nlines"] * 50


def test_too_many_columns(tmp_path: Path) -> None:
    error = limit_error(write(tmp_path, "a.csv", "a,b,c,d,e\n1,2,3,4,5\n"), "csv")
    assert (error.code, str(error)) == (
        "too_many_columns",
        "The file has 5 columns; the limit is 4.",
    )
    jsonl = '{"k0": 1}\n{"k1": 1}\n{"k0": 1, "k2": 1, "k3": 1, "k4": 1}\n'
    error = limit_error(write(tmp_path, "a.jsonl", jsonl), "jsonl")
    assert error.code == "too_many_columns" and str(error).startswith("Line 3 ")
    # Many lines each naming a new long column: the names together are bounded as one line.
    names = "".join(json.dumps({c * 30: 1}) + "\n" for c in "ab")
    error = limit_error(write(tmp_path, "b.jsonl", names), "jsonl")
    assert error.code == "too_many_columns" and "Line 2" in str(error)


def test_lines_split_at_cr_lf_and_crlf_only(tmp_path: Path) -> None:
    # \u2028, \x85 and \x0c are text to CSV and JSON Lines (str.splitlines would split there).
    content = "a,b\r\nx\u2028y,1\rp\x85q\x0c,2\n"
    frame = read_table(write(tmp_path, "a.csv", content), "csv")
    assert frame.values.tolist() == [["x\u2028y", "1"], ["p\x85q\x0c", "2"]]


def test_memory_does_not_grow_with_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "tiny.csv"
    path.write_bytes(b"t\n" + b"abc\n" * 200_000)
    tracemalloc.start()
    try:
        summary = scan_table(path, "csv", ParseLimits(max_line_chars=1 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.row_count == 200_000
    assert peak < 4 * 1024 * 1024, peak  # a chunk of lines; all the rows would be ~25 MB
