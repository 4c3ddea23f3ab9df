"""Principals of recently seen API keys, kept for a few seconds in each API process.

Looking a key up takes a database query in a worker thread, and under predict load that thread
hop waits for the interpreter lock held by the forward pass, which costs more than the query.
A key seen within the last `seconds` is trusted again without a lookup; so a revoked key is
refused at most `seconds` later in every API process. `seconds = 0` looks every request up.
"""

import time
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache

from app.auth.service import Principal
from app.core.config import get_settings

KEYS_KEPT = 10_000


class PrincipalCache:
    """Key hash -> (principal, when it was looked up); the oldest entries go first."""

    def __init__(
        self, seconds: float, clock: Callable[[], float] = time.monotonic, size: int = KEYS_KEPT
    ) -> None:
        self.seconds = seconds
        self.clock = clock
        self.size = size
        self._entries: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def get(self, key_hash: str) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        principal, looked_up_at = entry
        if self.clock() - looked_up_at >= self.seconds:
            del self._entries[key_hash]
            return None
        return principal

    def put(self, key_hash: str, principal: Principal) -> None:
        if self.seconds <= 0:
            return
        self._entries[key_hash] = (principal, self.clock())
        self._entries.move_to_end(key_hash)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


@lru_cache
def get_principal_cache() -> PrincipalCache:
    return PrincipalCache(get_settings().auth_cache_seconds)
