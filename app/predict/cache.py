"""A bounded, least-recently-used set of loaded models shared by all requests."""

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ModelCache(Generic[T]):
    """Keeps at most `capacity` entries; each key is loaded once even under concurrent calls."""

    def __init__(self, capacity: int, loader: Callable[[str], T]) -> None:
        self.capacity = max(1, capacity)
        self.loader = loader
        self._entries: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    def get(self, key: str) -> T:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._entries:
                    return self._entries[key]
            value = self.loader(key)
            with self._lock:
                self._entries[key] = value
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
                self._key_locks.pop(key, None)
            return value

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries
