"""Every malformed or forged jobs cursor is answered 400 `invalid_cursor` by the real API
process, on SQLite and on PostgreSQL: dates at the edges of the datetime range, offsets that
push them past it, bad base64, bytes that are not UTF-8, ids that are no job's."""

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.api_process import api_process
from tests.support.service import Service
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows


def b64(raw: str | bytes) -> str:
    data = raw.encode() if isinstance(raw, str) else raw
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


JOB_ID = "job_" + "0" * 24
FORGED = [
    # Past the datetime range once moved to UTC (was an OverflowError: 500).
    b64(f"9999-12-31T23:59:59.999999-00:01|{JOB_ID}"),
    b64(f"9999-12-31T23:59:59.999999-23:59|{JOB_ID}"),
    b64(f"0001-01-01T00:00:00+23:59|{JOB_ID}"),
    b64(f"0001-01-01T00:00:00+00:01|{JOB_ID}"),
    # Ids that no job has.
    b64("9999-12-31T23:59:59.999999+00:00|job_x"),
    b64("0001-01-01T00:00:00-23:59|x"),
    b64("0001-01-01T00:00:00+00:00|x"),
    "9999-12-31T23:59:59.999999+00:00|job_x",
    "0001-01-01T00:00:00-23:59|x",
    b64("2026-01-01T00:00:00|job_naive"),
    b64("2026-01-01T00:00:00+00:00|"),
    b64("2026-01-01T00:00:00+00:00|job_\x00nul"),
    b64("2026-01-01T00:00:00+00:00|" + "j" * 200),
    b64("2026-01-01T00:00:00\x00+00:00|job_x"),
    b64(b"\xff\xfe\xfd|job_x"),
    b64(b"2026-01-01T00:00:00+00:00|job_\xc3"),
    "a",
    "abcde",
    "=",
    "%%%%",
    "ä",
    "\x00",
    b64("|"),
    b64("not a date|job_x"),
]


@pytest.fixture
def api(tmp_path: Path, database_url: str, tiny_model_dir: Path) -> Iterator[Service]:
    with api_process(tmp_path, database_url, tiny_model_dir) as service:
        yield service


def test_forged_cursors_are_400(api: Service) -> None:
    train, dev = api.upload(sentiment_rows(20)), api.upload(sentiment_rows(6, seed=1))
    for index in range(3):
        api.create_job(tiny_spec(train, dev, hyperparameters={"seed": index}))
    with api.client() as client:
        for cursor in FORGED:
            response = client.get("/v1/jobs", params={"cursor": cursor})
            assert response.status_code == 400, (cursor, response.text)
            assert response.json()["error"]["code"] == "invalid_cursor"
        # The cursors this API gives still page through every job.
        first = client.get("/v1/jobs", params={"limit": 2}).json()
        rest = client.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert len(first["data"]) + len(rest["data"]) == 3
        assert rest["next_cursor"] is None
        # A well-formed cursor at either end of the range is a valid position: a page.
        for edge in (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)):
            cursor = b64(f"{edge.isoformat()}|{JOB_ID}")
            assert client.get("/v1/jobs", params={"cursor": cursor}).status_code == 200
        # One API process for both tests (each start takes seconds): the property below.
        any_cursor_is_a_page_or_400(client)


offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
dates = st.datetimes(
    min_value=datetime.min, max_value=datetime.max, timezones=st.one_of(st.none(), offsets)
).map(lambda value: value.isoformat())
ids = st.text(max_size=50) | st.text("0123456789abcdef", min_size=1, max_size=40).map(
    "job_".__add__
)
payloads = st.tuples(dates | st.text(max_size=40), ids).map("|".join)
cursors = (
    payloads.map(b64)
    | st.binary(max_size=80).map(b64)
    | st.text(max_size=120)
    | payloads.filter(lambda text: len(text) <= 500)
)


def any_cursor_is_a_page_or_400(client: httpx.Client) -> None:
    """No cursor at all makes the API fail: a page (a position that parses) or 400."""

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(cursor=cursors)
    def check(cursor: str) -> None:
        response = client.get("/v1/jobs", params={"cursor": cursor})
        assert response.status_code in (200, 400, 422), (cursor, response.text)
        if response.status_code != 200:
            assert response.json()["error"]["code"] in ("invalid_cursor", "validation_error")

    check()
