"""Where every stored byte lives: uploads, models, kept checkpoints and produced files.

Callers name objects by key (`files/<id>.<fmt>`, `models/<id>/<name>`, `checkpoints/<job>/…`,
`outputs/…`) and never by a path, so an object-store backend can replace the local one.
"""

from app.storage.base import (
    ObjectInfo,
    Storage,
    StorageConfigError,
    StorageError,
    StorageIntegrityError,
    StorageKeyError,
    check_key,
    check_prefix,
)
from app.storage.lifecycle import after_commit, check_storage, delete_after_commit, get_storage
from app.storage.local import LocalStorage

__all__ = [
    "LocalStorage",
    "ObjectInfo",
    "Storage",
    "StorageConfigError",
    "StorageError",
    "StorageIntegrityError",
    "StorageKeyError",
    "check_key",
    "check_storage",
    "after_commit",
    "check_prefix",
    "delete_after_commit",
    "get_storage",
]
