"""The storage interface every backend implements, and the rules for keys."""

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

# One key component: no separators, no leading dot-dot, nothing a shell or a URL mangles.
_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")


class StorageKeyError(ValueError):
    """A key that is not one this service makes (absolute, `..`, odd characters)."""


class StorageError(OSError):
    """The store could not do what was asked (after retries); the API answers 503."""


class StorageConfigError(StorageError):
    """The store is misconfigured (credentials refused, no such bucket, unreachable at start)."""


class StorageIntegrityError(StorageError):
    """A downloaded object does not match the sha256 its tree's manifest recorded."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


def check_key(key: str) -> str:
    """`key` when every `/`-separated component is a plain name; else StorageKeyError."""
    parts = key.split("/")
    if not key or any(not _COMPONENT.match(part) or part.startswith("..") for part in parts):
        raise StorageKeyError(f"not a storage key: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """A prefix names a folder: a key followed by `/`."""
    if not prefix.endswith("/"):
        raise StorageKeyError(f"a prefix ends with '/': {prefix!r}")
    check_key(prefix[:-1])
    return prefix


class Storage(Protocol):
    """Objects by key. Writes are all-or-nothing: a reader sees a whole object or none, and
    `put_tree` makes a folder visible only once every file of it is stored. A tree is written
    once: `put_tree` onto a prefix that holds a stored tree raises FileExistsError (files may
    still be `put` into a stored tree later, like a model's rewritten card)."""

    def check(self) -> None:
        """A cheap call that fails at start with StorageConfigError when the store cannot be
        used (credentials refused, no bucket, unreachable)."""
        ...

    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing what was there."""
        ...

    def put_file(self, key: str, source: Path) -> None:
        """Store the local file `source` under `key`; `source` is consumed (moved or removed)."""
        ...

    def put_tree(self, prefix: str, source: Path) -> int:
        """Store every file of the local folder `source` (flat) under `prefix`; the bytes
        stored. `source` is consumed. Nothing is visible under `prefix` until all of it is;
        FileExistsError when `prefix` already holds a stored tree."""
        ...

    def get(self, key: str) -> bytes:
        """The whole object; FileNotFoundError when there is none."""
        ...

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        """The object as a binary stream, read in chunks; FileNotFoundError when none."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> int:
        """Remove one object; the bytes freed (0 when there was none)."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under `prefix`; the bytes freed."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """The objects under `prefix` (recursively), sorted by key."""
        ...

    def size(self, prefix: str) -> int:
        """The bytes of every object under `prefix`."""
        ...

    def local_dir(self, prefix: str) -> AbstractContextManager[Path]:
        """A local folder holding the objects under `prefix` for the block (for libraries
        that read folders, like `from_pretrained`): the folder itself for the local backend,
        a downloaded copy for an object store."""
        ...

    def local_file(self, key: str) -> AbstractContextManager[Path]:
        """A local file holding the object for the block (see `local_dir`)."""
        ...
