"""Retrying database writes through a short outage."""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import OperationalError

logger = logging.getLogger(__name__)
T = TypeVar("T")


def retry_db(action: Callable[[], T], attempts: int = 8, first_delay: float = 0.5) -> T:
    """Run `action`, retrying on connection errors with exponential backoff (about 1 minute)."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except OperationalError as exc:
            if attempt == attempts:
                raise
            logger.warning("database write failed (attempt %d), retrying: %s", attempt, exc)
            time.sleep(delay)
            delay = min(delay * 2, 15.0)
    raise AssertionError("unreachable")
