"""A job's event stream, followed to its end across dropped connections."""

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from app.client.http import ApiClient, ApiErrorResponse, ClientError, ConnectionFailed
from app.client.sse import SseMessage

TERMINAL_EVENTS = ("succeeded", "failed", "cancelled")
MAX_RECONNECTS = 20  # in a row, without an event in between


@dataclass(frozen=True)
class JobEvent:
    """One entry of a job's event log: `{"seq", "type", "data", "created_at"}`."""

    seq: int
    type: str
    data: dict[str, Any]
    created_at: str
    raw: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS


def decode_event(message: SseMessage) -> JobEvent:
    """The JSON `data:` of one SSE message."""
    try:
        raw = json.loads(message.data)
        return JobEvent(
            seq=int(raw["seq"]),
            type=str(raw["type"]),
            data=dict(raw.get("data") or {}),
            created_at=str(raw.get("created_at", "")),
            raw=raw,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ClientError(f"unreadable event in the stream: {message.data[:200]!r}") from exc


def follow_events(
    api: ApiClient,
    job_id: str,
    on_reconnect: Callable[[int, str], None] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Iterator[JobEvent]:
    """Every event of the job, up to its final one. A dropped connection is reopened with
    `Last-Event-ID` of the last event seen, so no event is lost or repeated."""
    last_seq = 0
    failures = 0
    while True:
        try:
            for message in api.job_events(job_id, after=last_seq):
                event = decode_event(message)
                if event.seq <= last_seq:
                    continue
                last_seq, failures = event.seq, 0
                yield event
                if event.terminal:
                    return
            # The server ends long streams (and drops clients that fall behind): reconnect
            # without counting it as a failure.
            if on_reconnect is not None:
                on_reconnect(last_seq, "the stream ended before the job's final event")
            (sleep or time.sleep)(0.2)
            continue
        except ConnectionFailed as exc:
            reason = str(exc)
        except ApiErrorResponse as exc:
            if exc.status_code == 429:  # over the tenant's streams: wait as told
                (sleep or time.sleep)(_retry_after(exc))
                continue
            if exc.status_code < 500:
                raise
            reason = str(exc)
        failures += 1
        if failures > MAX_RECONNECTS:
            raise ClientError(f"gave up following job {job_id} events: {reason}")
        if on_reconnect is not None:
            on_reconnect(last_seq, reason)
        (sleep or time.sleep)(min(0.5 * 2 ** (failures - 1), 5.0))


def _retry_after(exc: ApiErrorResponse) -> float:
    value = (getattr(exc, "headers", None) or {}).get("retry-after", "5")
    try:
        return min(max(float(value), 0.5), 60.0)
    except ValueError:
        return 5.0
