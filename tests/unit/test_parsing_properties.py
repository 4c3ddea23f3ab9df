"""Property and hostile-file tests for app.files.parsing.read_table.

Hypothesis cannot use the function-scoped `tmp_path`, so each test gets one module-scoped
directory and every example writes its own fresh file into it.
"""

import csv
import io
import json
import re
import sys
import uuid
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from app.files import parsing
from app.files.parsing import (
    NO_LIMITS,
    FileParseError,
    ParseLimits,
    TableSummary,
    read_table,
    scan_table,
)

BOM = b"\xef\xbb\xbf"
FORMATS = ("csv", "tsv", "jsonl")
EXAMPLES = 200
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("parsing_properties")


def write(directory: Path, content: bytes, suffix: str = ".dat") -> Path:
    path = directory / f"{uuid.uuid4().hex}{suffix}"
    path.write_bytes(content)
    return path


def as_rows(frame: pd.DataFrame) -> list[list[object]]:
    return [list(row) for row in frame.itertuples(index=False, name=None)]


# --- strategies -------------------------------------------------------------------------------

# Characters the formats find awkward, mixed into ordinary unicode (no NUL, no surrogates).
_TRICKY = st.sampled_from(
    [
        ",",
        '"',
        "'",
        "\n",
        "\r",
        "\r\n",
        "\t",
        " ",
        "\\",
        "\ufeff",
        "\u2028",
        "\x85",
        "é",
        "😀",
        "{",
        "[",
    ]
)
_ANY_CHAR = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")


def _text(alphabet: st.SearchStrategy[str], *, min_size: int = 0) -> st.SearchStrategy[str]:
    return st.lists(alphabet, min_size=min_size, max_size=12).map("".join)


CELL = _text(st.one_of(_TRICKY, _ANY_CHAR))
# A leading U+FEFF in the first column name would be read as a byte-order mark: names skip it.
NAME = _text(st.one_of(_TRICKY, _ANY_CHAR).filter(lambda c: c != "\ufeff"), min_size=1)


def _no_tab_or_line_break(c: str) -> bool:
    return not any(ch in "\t\n\r" for ch in c)


TSV_CELL = _text(st.one_of(_TRICKY, _ANY_CHAR).filter(_no_tab_or_line_break))
TSV_NAME = _text(
    st.one_of(_TRICKY, _ANY_CHAR).filter(lambda c: _no_tab_or_line_break(c) and c != "\ufeff"),
    min_size=1,
)


@st.composite
def tables(
    draw: st.DrawFn, name: st.SearchStrategy[str], cell: st.SearchStrategy[str]
) -> tuple[list[str], list[list[str]]]:
    names = draw(st.lists(name, min_size=1, max_size=5, unique=True))
    rows = draw(
        st.lists(st.lists(cell, min_size=len(names), max_size=len(names)), min_size=1, max_size=20)
    )
    # A file of nothing but whitespace is rejected as empty, whatever its shape.
    assume(any(text.strip() for text in [*names, *(c for row in rows for c in row)]))
    return names, rows


# Bytes that are neither pure noise nor clean: fragments of every format, bad UTF-8, NUL, BOM.
_FRAGMENTS = st.sampled_from(
    [b",", b"\t", b'"', b"\n", b"\r", b"\r\n", b" ", b"a", b"b", b"1", b"{", b"}", b"[", b"]"]
    + [b":", b'"k"', b'"v"', b"null", b"true", b"1e999", b"\\", b"\\u00", b"\xff", b"\x00"]
    + [b"\xc3", b"\xc3\xa9", BOM, b"\xf0\x9f\x98\x80", b'{"a": 1}\n', b"a,b\n", b"a\tb\n"]
    # Past the interpreter's limits: nesting deeper than the recursion limit, a 4,301-digit number.
    + [b"[" * 1_500, b'{"a":' * 1_500, b"9" * 4_301]
    # JSON escapes of lone UTF-16 surrogates (not encodable as UTF-8), and a valid pair.
    + [b'"\\ud800"', b"\\udfff", b'"\\ud83d\\ude00"']
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
_JSONL_TEXT = st.lists(
    st.one_of(*[st.dictionaries(st.text(max_size=4), _JSON, max_size=4)] * 4, _JSON).map(json.dumps)
    | st.just(""),
    min_size=1,
    max_size=6,
).map(lambda lines: "\n".join(lines).encode())
_DELIMITED_TEXT = st.lists(
    st.lists(st.text(max_size=6), min_size=1, max_size=4).map(",".join)
    | st.lists(st.text(max_size=6), min_size=1, max_size=4).map("\t".join),
    min_size=1,
    max_size=6,
).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass"))


@st.composite
def _mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """Nearly valid files: a few fragments spliced into a well-formed one."""
    data = draw(base)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 2))
        data = data[:at] + draw(_FRAGMENTS) + data[at + cut :]
    return data


HOSTILE_BYTES = st.one_of(
    st.binary(max_size=300),
    st.lists(_FRAGMENTS, max_size=60).map(b"".join),
    st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
    _JSONL_TEXT,
    _DELIMITED_TEXT,
    _mutated(_JSONL_TEXT | _DELIMITED_TEXT),
)


# --- round trips ------------------------------------------------------------------------------


@PROPERTY
@given(table=tables(NAME, CELL))
def test_csv_round_trip(workdir: Path, table: tuple[list[str], list[list[str]]]) -> None:
    names, rows = table
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(names)
    writer.writerows(rows)
    frame = read_table(write(workdir, buffer.getvalue().encode(), ".csv"), "csv")
    assert list(frame.columns) == names
    assert as_rows(frame) == rows


@PROPERTY
@given(table=tables(NAME, CELL), ascii_only=st.booleans())
def test_jsonl_round_trip(
    workdir: Path, table: tuple[list[str], list[list[str]]], ascii_only: bool
) -> None:
    names, rows = table
    lines = [
        json.dumps(dict(zip(names, row, strict=True)), ensure_ascii=ascii_only) for row in rows
    ]
    frame = read_table(write(workdir, "\n".join(lines).encode() + b"\n", ".jsonl"), "jsonl")
    assert list(frame.columns) == names
    assert as_rows(frame) == rows


@PROPERTY
@given(table=tables(TSV_NAME, TSV_CELL), line_end=st.sampled_from(["\n", "\r\n"]))
def test_tsv_round_trip(
    workdir: Path, table: tuple[list[str], list[list[str]]], line_end: str
) -> None:
    names, rows = table
    # With one column an empty cell is an empty line, which any reader must skip: not a table.
    assume(len(names) > 1 or all(row[0] for row in rows))
    text = "".join("\t".join(fields) + line_end for fields in [names, *rows])
    frame = read_table(write(workdir, text.encode(), ".tsv"), "tsv")
    assert list(frame.columns) == names
    assert as_rows(frame) == rows


# --- totality and the byte-order mark ---------------------------------------------------------


def outcome(path: Path, fmt: str) -> tuple[str, object]:
    """('ok', columns and rows) or ('error', message); any other exception propagates."""
    try:
        frame = read_table(path, fmt)
    except FileParseError as exc:
        return "error", str(exc)
    return "ok", (list(frame.columns), as_rows(frame))


def check_well_formed(frame: pd.DataFrame) -> None:
    assert isinstance(frame, pd.DataFrame)
    columns = list(frame.columns)
    assert len(columns) >= 1
    assert all(isinstance(c, str) for c in columns)
    assert len(set(columns)) == len(columns)
    assert len(frame) >= 1
    for row in as_rows(frame):
        assert len(row) == len(columns)
        assert all(isinstance(cell, str) for cell in row), row


@PROPERTY
@given(data=HOSTILE_BYTES)
def test_any_bytes_give_a_table_of_strings_or_a_file_parse_error(
    workdir: Path, data: bytes
) -> None:
    path = write(workdir, data)
    for fmt in FORMATS:
        try:
            frame = read_table(path, fmt)
        except FileParseError as exc:
            assert str(exc), "an error message must not be empty"
            event(f"{fmt}: error")
            continue
        event(f"{fmt}: table")
        check_well_formed(frame)


@PROPERTY
@given(data=HOSTILE_BYTES)
def test_a_byte_order_mark_changes_nothing(workdir: Path, data: bytes) -> None:
    assume(not data.startswith(BOM))  # only one mark is dropped; a second one is text
    plain, marked = write(workdir, data), write(workdir, BOM + data)
    for fmt in FORMATS:
        plain_kind, plain_value = outcome(plain, fmt)
        marked_kind, marked_value = outcome(marked, fmt)
        assert marked_kind == plain_kind
        if plain_kind == "ok":
            assert marked_value == plain_value
            continue
        assert isinstance(plain_value, str) and isinstance(marked_value, str)
        # A UTF-8 error names its byte in the file, so it moves by the mark's 3 bytes.
        offset = re.search(r"byte (\d+)", plain_value)
        if offset:
            plain_value = plain_value.replace(offset[0], f"byte {int(offset[1]) + 3}")
        assert marked_value == plain_value


@PROPERTY
@given(table=tables(NAME, CELL), fmt=st.sampled_from(["csv", "jsonl"]))
def test_a_byte_order_mark_before_a_valid_table_changes_nothing(
    workdir: Path, table: tuple[list[str], list[list[str]]], fmt: str
) -> None:
    names, rows = table
    if fmt == "csv":
        buffer = io.StringIO(newline="")
        csv.writer(buffer).writerows([names, *rows])
        content = buffer.getvalue().encode()
    else:
        content = "".join(
            json.dumps(dict(zip(names, r, strict=True))) + "\n" for r in rows
        ).encode()
    assert outcome(write(workdir, BOM + content), fmt) == ("ok", (names, rows))


# --- hostile files ----------------------------------------------------------------------------


def parse_error(workdir: Path, content: str | bytes, fmt: str) -> str:
    data = content.encode() if isinstance(content, str) else content
    with pytest.raises(FileParseError) as caught:
        read_table(write(workdir, data, f".{fmt}"), fmt)
    return str(caught.value)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("content", ["", "\n", "\n\n\r\n", " \n  \n\n", BOM, BOM + b"\r\n"])
def test_empty_or_blank_file(workdir: Path, fmt: str, content: str | bytes) -> None:
    assert "empty" in parse_error(workdir, content, fmt)


def test_whitespace_only_file_is_empty_even_with_spaces(workdir: Path) -> None:
    assert "empty" in parse_error(workdir, "   \n  \n ", "csv")
    assert "empty" in parse_error(workdir, "  \n \n", "tsv")


@pytest.mark.parametrize(("fmt", "content"), [("csv", "a,b\n"), ("tsv", "a\tb\r\n\r\n")])
def test_header_only(workdir: Path, fmt: str, content: str) -> None:
    assert "no rows" in parse_error(workdir, content, fmt)


def test_leading_blank_lines_are_skipped_not_called_empty(workdir: Path) -> None:
    frame = read_table(write(workdir, b"\n\r\na,b\n1,2\n", ".csv"), "csv")
    assert list(frame.columns) == ["a", "b"]
    assert as_rows(frame) == [["1", "2"]]


def test_csv_read_as_tsv_is_one_column_not_an_error(workdir: Path) -> None:
    # Not detectable: without tabs a CSV file is a valid one-column TSV file.
    frame = read_table(write(workdir, b"text,label\nhello,pos\n", ".tsv"), "tsv")
    assert list(frame.columns) == ["text,label"]
    assert as_rows(frame) == [["hello,pos"]]


def test_tsv_with_commas_read_as_csv_names_the_line_and_the_delimiter(workdir: Path) -> None:
    message = parse_error(workdir, "text\tlabel\nhello\tpos\nyes, no\tneg\n", "csv")
    assert "Line 3" in message
    assert "delimiter" in message


@pytest.mark.parametrize(
    ("fmt", "content", "line"),
    [
        ("csv", "a,b\n1,2\n3,4\n5\n", "Line 4"),
        ("csv", 'a,b\n"multi\nline",2\n3,4,5\n', "Line 4"),
        ("tsv", "a\tb\n1\t2\n1\t2\t3\n", "Line 3"),
    ],
)
def test_ragged_rows_name_the_line(workdir: Path, fmt: str, content: str, line: str) -> None:
    message = parse_error(workdir, content, fmt)
    assert line in message
    assert "fields" in message


@pytest.mark.parametrize("fmt", FORMATS)
def test_non_utf8_bytes(workdir: Path, fmt: str) -> None:
    assert "UTF-8" in parse_error(workdir, b'{"a": "caf\xe9"}\n', fmt)


def test_utf16_with_bom_is_not_utf8(workdir: Path) -> None:
    assert "UTF-8" in parse_error(workdir, "a,b\n1,2\n".encode("utf-16"), "csv")


def test_utf8_error_names_the_byte_in_the_file_not_in_a_read_chunk(workdir: Path) -> None:
    body = b"a,b\n" + b"x," * 20_000 + b"\xff\n"
    assert "byte 40004" in parse_error(workdir, body, "csv")
    assert "byte 40007" in parse_error(workdir, BOM + body, "csv")
    # A sequence cut off by the end of the file is found too.
    assert "byte 40004" in parse_error(workdir, body[:-2] + b"\xc3", "csv")


@pytest.mark.parametrize(
    ("fmt", "content"),
    [
        ("csv", b'text,label\n"' + b"x" * 200_000 + b'",pos\n'),
        ("csv", b'"' + b"x" * 200_000 + b'",label\n1,2\n'),
        ("tsv", b"text\tlabel\n" + b"x" * 200_000 + b"\tpos\n"),
    ],
)
def test_huge_single_field(workdir: Path, fmt: str, content: bytes) -> None:
    message = parse_error(workdir, content, fmt)
    assert "field limit" in message
    assert message.startswith("Line ")


def test_field_just_under_the_limit_is_fine(workdir: Path) -> None:
    big = "y" * 131_000
    frame = read_table(write(workdir, f'text,label\n"{big}",pos\n'.encode(), ".csv"), "csv")
    assert frame.loc[0, "text"] == big


@pytest.mark.parametrize(
    "line",
    ["[" * 100_000, '{"a": ' + "[" * 100_000, '{"a": ' + "[" * 5_000 + "]" * 5_000 + "}"],
)
def test_deeply_nested_json_is_a_parse_error(workdir: Path, line: str) -> None:
    message = parse_error(workdir, '{"a": "ok"}\n' + line + "\n", "jsonl")
    assert "Line 2" in message
    assert "nested too deeply" in message


def test_nesting_around_the_recursion_limit_never_leaks(workdir: Path) -> None:
    # json.loads may just manage a depth that json.dumps (for the cell text) cannot.
    limit = sys.getrecursionlimit()
    for depth in range(limit - 120, limit + 20, 4):
        path = write(workdir, ('{"a": ' + "[" * depth + "]" * depth + "}\n").encode())
        try:
            frame = read_table(path, "jsonl")
        except FileParseError as exc:
            assert "nested too deeply" in str(exc)
        else:
            assert frame.loc[0, "a"] == "[" * depth + "]" * depth


def test_json_integer_too_long_to_convert(workdir: Path) -> None:
    message = parse_error(workdir, '{"a": 1}\n{"a": ' + "9" * 5_000 + "}\n", "jsonl")
    assert message.startswith("Line 2 is not valid JSON")


@pytest.mark.parametrize("line", ["[1, 2]", '"text"', "42", "null", "true"])
def test_jsonl_line_that_is_not_an_object(workdir: Path, line: str) -> None:
    message = parse_error(workdir, '{"a": 1}\n\n' + line + "\n", "jsonl")
    assert "Line 3 is not a JSON object" in message


@pytest.mark.parametrize("line", ['{"a": ', '{"a": 1}}', "{'a': 1}", '{"a": "\x01"}', "NaN-ish"])
def test_jsonl_broken_line_names_the_line(workdir: Path, line: str) -> None:
    message = parse_error(workdir, '{"a": 1}\n{"a": 2}\n' + line + '\n{"a": 3}\n', "jsonl")
    assert "Line 3 is not valid JSON" in message


@pytest.mark.parametrize(
    "line", ['{"a": "\\ud800"}', '{"\\udfff": "x"}', '{"a": "ok \\ude00 \\ud83d"}']
)
def test_jsonl_lone_surrogate_escape(workdir: Path, line: str) -> None:
    message = parse_error(workdir, '{"a": "x"}\n' + line + "\n", "jsonl")
    assert "Line 2" in message
    assert "surrogate" in message


def test_jsonl_surrogate_pairs_and_nested_lone_surrogates_are_fine(workdir: Path) -> None:
    content = '{"a": "\\ud83d\\ude00", "b": ["\\ud800"]}\n'
    frame = read_table(write(workdir, content.encode(), ".jsonl"), "jsonl")
    assert as_rows(frame) == [["\U0001f600", '["\\ud800"]']]


def test_jsonl_objects_without_keys_have_no_columns(workdir: Path) -> None:
    assert "no columns" in parse_error(workdir, "{}\n{}\n", "jsonl")


@pytest.mark.parametrize(
    ("fmt", "content"),
    [("csv", "a,b,a\n1,2,3\n"), ("tsv", "x\tx\n1\t2\n"), ("csv", '"a",a\n1,2\n')],
)
def test_duplicate_column_names(workdir: Path, fmt: str, content: str) -> None:
    assert "duplicate column names" in parse_error(workdir, content, fmt)


@pytest.mark.parametrize(
    ("fmt", "content", "line"),
    [
        ("csv", b"a,b\n1,2\n3\x00,4\n", "Line 3"),
        ("csv", b"a\x00,b\n1,2\n", "Line 1"),
        ("tsv", b"a\tb\n1\t\x00\n", "Line 2"),
        ("csv", "a,b\n1,2\n".encode("utf-16-le"), "Line 1"),  # UTF-16 without a mark
    ],
)
def test_nul_bytes(workdir: Path, fmt: str, content: bytes, line: str) -> None:
    message = parse_error(workdir, content, fmt)
    assert "NUL" in message
    assert line in message


def test_unknown_format(workdir: Path) -> None:
    assert "Unknown format" in parse_error(workdir, "a,b\n1,2\n", "xlsx")


# --- streaming: chunk boundaries and limits ---------------------------------------------------


def outcome_with(
    path: Path, fmt: str, chunk_bytes: int, limits: ParseLimits = NO_LIMITS
) -> tuple[str, object]:
    with mock.patch.object(parsing, "_CHUNK_BYTES", chunk_bytes):
        try:
            frame = read_table(path, fmt, limits)
        except FileParseError as exc:
            return type(exc).__name__, str(exc)
        summary = scan_table(path, fmt, limits)
    assert summary == TableSummary(list(frame.columns), len(frame))
    return "ok", (list(frame.columns), as_rows(frame))


@PROPERTY
@given(data=HOSTILE_BYTES, chunk_bytes=st.integers(1, 9))
def test_chunk_boundaries_change_nothing(workdir: Path, data: bytes, chunk_bytes: int) -> None:
    # Chunk ends fall inside UTF-8 sequences, between \r and \n, inside a BOM; errors come
    # in the same order as with one chunk for the whole file.
    path = write(workdir, data)
    for fmt in FORMATS:
        assert outcome_with(path, fmt, chunk_bytes) == outcome_with(path, fmt, 1 << 20)


@PROPERTY
@given(table=tables(NAME, CELL), chunk_bytes=st.integers(1, 9))
def test_chunk_boundaries_keep_csv_round_trips(
    workdir: Path, table: tuple[list[str], list[list[str]]], chunk_bytes: int
) -> None:
    names, rows = table
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows([names, *rows])  # \r\n: chunks end between \r and \n
    path = write(workdir, buffer.getvalue().encode(), ".csv")
    assert outcome_with(path, "csv", chunk_bytes) == ("ok", (names, rows))


@PROPERTY
@given(data=HOSTILE_BYTES, chunk_bytes=st.integers(1, 9))
def test_limits_above_the_file_change_nothing(workdir: Path, data: bytes, chunk_bytes: int) -> None:
    path = write(workdir, data)
    roomy = ParseLimits(
        max_rows=len(data) + 1, max_columns=len(data) + 1, max_line_chars=len(data) + 1
    )
    for fmt in FORMATS:
        assert outcome_with(path, fmt, chunk_bytes, roomy) == outcome_with(path, fmt, 1 << 20)


@PROPERTY
@given(data=HOSTILE_BYTES, limit=st.integers(1, 40))
def test_a_tight_line_limit_is_an_error_or_a_table_within_it(
    workdir: Path, data: bytes, limit: int
) -> None:
    path = write(workdir, data)
    for fmt in ("tsv", "jsonl"):  # one line a record: the limit is exact
        kind, value = outcome_with(path, fmt, 1 << 20, ParseLimits(max_line_chars=limit))
        if kind == "ok":
            longest = max(map(len, parsing._LINE.findall(data.decode("utf-8-sig"))), default=0)
            assert longest <= limit
            assert (kind, value) == outcome_with(path, fmt, 1 << 20)
        elif kind == "FileLimitError":
            assert "characters, the limit" in str(value)
