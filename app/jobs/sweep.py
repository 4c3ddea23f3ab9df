"""Removes what no database row owns: model folders whose commit never happened, folders of
jobs that have ended (checkpoints of a worker that died, or of attempts superseded), and
upload leftovers, on disk and in the object store. Only entries older than TUNESERVE_SWEEP_GRACE_SECONDS are touched, so a
model folder renamed into place an instant before its row commits is never taken."""

import logging
import shutil
import time
from pathlib import Path

from app.core.config import Settings
from app.core.db import session_scope
from app.files.repository import FileRepository
from app.jobs.repository import JobRepository
from app.jobs.states import JobStatus
from app.models.repository import ModelRepository
from app.storage import get_storage
from app.storage.s3 import ObjectStorage

logger = logging.getLogger(__name__)


def _old_entries(folder: Path, grace_seconds: float) -> list[Path]:
    if not folder.is_dir():
        return []
    cutoff = time.time() - grace_seconds
    entries = []
    for entry in folder.iterdir():
        try:
            if entry.lstat().st_mtime < cutoff:
                entries.append(entry)
        except FileNotFoundError:
            continue
    return entries


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _unowned_checkpoints(status: JobStatus | None) -> bool:
    """A job's stored checkpoints are no one's once it has no row or ended other than
    succeeded; a queued or running job resumes from them."""
    return status is None or (status.is_terminal and status is not JobStatus.succeeded)


def _sweep_store(storage: ObjectStorage, grace: float, removed: dict[str, int]) -> None:
    """Models whose row never committed (their tree whole or not), kept epochs of jobs that
    did not succeed, and files without a row, in the object store."""
    cutoff = time.time() - grace
    models = storage.stale_entries("models/", cutoff)
    with session_scope() as session:
        owned = ModelRepository(session).existing_ids(models)
    for name in models:
        if name not in owned:
            storage.delete_prefix(f"models/{name}/")
            removed["models"] += 1
    kept = storage.stale_entries("checkpoints/", cutoff)
    with session_scope() as session:
        statuses = JobRepository(session).statuses(kept)
    for name in kept:
        if _unowned_checkpoints(statuses.get(name)):
            storage.delete_prefix(f"checkpoints/{name}/")
            removed["checkpoints"] += 1
    files = storage.stale_entries("files/", cutoff)
    with session_scope() as session:
        known = FileRepository(session).existing_ids([name.split(".")[0] for name in files])
    for name in files:
        if name.split(".")[0] not in known:
            storage.delete(f"files/{name}")
            removed["uploads"] += 1


def sweep_leftovers(settings: Settings, store: bool = True) -> dict[str, int]:
    """One sweep; returns how many entries of each kind it removed. `store`: the object store
    too, when one is configured (never in a process that forks: see check_storage)."""
    grace = settings.sweep_grace_seconds
    removed = {"models": 0, "jobs": 0, "uploads": 0, "checkpoints": 0}
    if store and settings.storage_url:
        storage = get_storage(settings)
        if isinstance(storage, ObjectStorage):
            _sweep_store(storage, grace, removed)

    models = _old_entries(settings.models_dir, grace)
    with session_scope() as session:
        owned = ModelRepository(session).existing_ids([path.name for path in models])
    for path in models:
        if path.name not in owned:
            _remove(path)
            removed["models"] += 1

    jobs = _old_entries(settings.jobs_dir, grace)
    with session_scope() as session:
        statuses = JobRepository(session).statuses([path.name for path in jobs])
    for path in jobs:
        status = statuses.get(path.name)
        if status is None or status.is_terminal:
            _remove(path)
            removed["jobs"] += 1

    # Kept epoch weights and checkpoints of jobs that did not succeed (or have no row).
    kept = _old_entries(settings.resolved_data_dir / "checkpoints", grace)
    with session_scope() as session:
        statuses = JobRepository(session).statuses([path.name for path in kept])
    for path in kept:
        if _unowned_checkpoints(statuses.get(path.name)):
            _remove(path)
            removed["checkpoints"] += 1

    # Upload temp files (".upload-*") of a process that died mid-upload, and saved uploads
    # whose row never committed.
    uploads = _old_entries(settings.uploads_dir, grace)
    with session_scope() as session:
        known = FileRepository(session).existing_ids([p.name.split(".")[0] for p in uploads])
    for path in uploads:
        if path.name.startswith(".upload-") or path.name.split(".")[0] not in known:
            _remove(path)
            removed["uploads"] += 1

    if any(removed.values()):
        logger.info("sweep removed %s", removed)
    return removed
