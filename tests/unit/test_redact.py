"""Tenant-facing text carries no server paths and no passwords."""

import pytest

from app.core.redact import display_url, public_message, redact
from worker.hub import unsafe_data_file


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[Errno 2] No such file or directory: '/srv/tuneserve-data/files/file_1.csv'",
            "[Errno 2] No such file or directory: '<path>'",
        ),
        ("at /tmp/x/y.py, line 3", "at <path>, line 3"),
        ("open ~/secrets/token failed", "open <path> failed"),
        ("C:\\data\\x.csv is missing", "<path> is missing"),
        ("file:///etc/passwd", "<path>"),
        (
            "postgresql+psycopg://app:s3cret@db:5432/x refused",
            "postgresql+psycopg://app:***@db:5432/x refused",
        ),
        # not paths: relative names, Hub ids, URLs' paths, ratios
        ("column 'a/b' of org/name at https://huggingface.co/org/name", None),
        ("1/2 of 3 / 4", None),
    ],
)
def test_redact(text: str, expected: str | None) -> None:
    assert redact(text) == (text if expected is None else expected)


def test_public_message_is_one_short_redacted_line() -> None:
    exc = FileNotFoundError(2, "No such file or directory", "/var/lib/tuneserve/jobs/job_1/x")
    assert public_message(exc) == "FileNotFoundError: [Errno 2] No such file or directory: '<path>'"
    assert public_message(ValueError("first /a/b\nsecond /c"), with_type=False) == "first <path>"
    assert public_message(RuntimeError("")) == "RuntimeError"
    assert len(public_message(ValueError("x" * 5000), limit=100)) <= len("ValueError: ") + 100


def test_display_url_hides_passwords() -> None:
    assert (
        display_url("postgresql+psycopg://u:pw@h:5432/d") == "postgresql+psycopg://u:***@h:5432/d"
    )
    assert display_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert display_url("sqlite:////data/tuneserve.db") == "sqlite:////data/tuneserve.db"


@pytest.mark.parametrize(
    "pattern",
    [
        "/data/files/*.csv",
        "http://x/y.csv",
        "hf://datasets/a/b/*.csv",
        "s3://b/k",
        "../x.csv",
        "a/../../x",
        "~/x",
        "C:/x",
        "zip://a::b",
        "",
        "a\\..\\x",
    ],
)
def test_card_data_files_must_stay_in_the_repository(pattern: str) -> None:
    assert unsafe_data_file(pattern)


@pytest.mark.parametrize("pattern", ["data/train-*", "mrpc/*.parquet", "train.csv", "**/*.jsonl"])
def test_relative_card_data_files_are_fine(pattern: str) -> None:
    assert not unsafe_data_file(pattern)
