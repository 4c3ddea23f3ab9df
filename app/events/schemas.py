"""API shapes of job events."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EventType = Literal[
    "queued",
    "started",
    "train_loss",
    "epoch_finished",
    "checkpoint_saved",
    "cancel_requested",
    "retried",
    "cancelled",
    "failed",
    "succeeded",
]
TERMINAL_EVENTS = ("cancelled", "failed", "succeeded")


class EventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int = Field(description="Position in the job's log, from 1; the SSE event id.")
    type: EventType
    data: dict[str, Any]
    created_at: datetime


class EventList(BaseModel):
    data: list[EventRead]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")
