"""The process's storage, and removals that wait for the database commit."""

import logging
import subprocess
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.storage.base import Storage, StorageConfigError
from app.storage.cache import LocalCache
from app.storage.local import LocalStorage
from app.storage.s3 import ObjectStorage, s3_store

logger = logging.getLogger(__name__)
_AFTER_COMMIT = "tuneserve_after_commit"


def get_storage(settings: Settings) -> Storage:
    """The backend of these settings: the data directory, or the object store of
    TUNESERVE_STORAGE_URL (one per distinct configuration, shared by the process)."""
    if not settings.storage_url:
        return _local(settings.resolved_data_dir)
    secret = settings.s3_secret_access_key
    return _object_storage(
        settings.storage_url,
        settings.s3_endpoint,
        settings.s3_region,
        settings.s3_access_key_id,
        secret.get_secret_value() if secret is not None else None,
        settings.storage_retry_seconds,
        settings.resolved_storage_cache_dir,
        settings.storage_cache_bytes,
    )


@lru_cache(maxsize=8)
def _local(root: Path) -> LocalStorage:
    return LocalStorage(root)


@lru_cache(maxsize=8)
def _object_storage(
    url: str,
    endpoint: str | None,
    region: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    retry_seconds: float,
    cache_dir: Path,
    cache_bytes: int,
) -> ObjectStorage:
    store = s3_store(
        url,
        endpoint=endpoint,
        region=region,
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        retry_seconds=retry_seconds,
    )
    return ObjectStorage(store, LocalCache(cache_dir, cache_bytes), url, retry_seconds)


def check_storage(settings: Settings, *, forks_later: bool = False) -> None:
    """Fail with StorageConfigError now when the store cannot be used (a process's start).

    obstore's runtime does not survive a fork: a process that forks later (the Celery worker,
    whose pool processes train) must not touch the object store itself, so with `forks_later`
    the check runs in a child process of its own."""
    if not forks_later or not settings.storage_url:
        get_storage(settings).check()
        return
    done = subprocess.run(
        [sys.executable, "-c", "from app.storage.lifecycle import _check_main; _check_main()"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["the storage check failed"]
        raise StorageConfigError(lines[-1])


def _check_main() -> None:
    from app.core.config import get_settings

    try:
        get_storage(get_settings()).check()
    except StorageConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(1) from None


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Call `callback` once the session's transaction commits (never after a rollback)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


def delete_after_commit(session: Session, storage: Storage, *keys: str) -> None:
    """Remove these keys (a key ending in `/` is a prefix) once the session commits: the rows
    go first, so a failed commit leaves the bytes; bytes whose rows are gone are the sweep's."""

    def remove() -> None:
        for key in keys:
            try:
                if key.endswith("/"):
                    storage.delete_prefix(key)
                else:
                    storage.delete(key)
            except OSError:
                logger.exception("could not remove %s; the sweep will", key)

    after_commit(session, remove)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop(_AFTER_COMMIT, []):
        callback()


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)
