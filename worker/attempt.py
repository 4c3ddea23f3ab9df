"""One attempt at a job: what it trains, where it writes, and the checkpoint it resumes from.

Each attempt writes into a scratch folder of its own on its worker's machine
(`jobs/<job>/attempt-<n>/`): a worker that was paused past its lease and wakes up again can
only touch its own folder, never the folder of the attempt that took over. Checkpoints are
stored (`checkpoints/<job>/resume/…`, the storage of TUNESERVE_STORAGE_URL) after each save,
so the next attempt resumes from the last complete one on whichever machine it runs.
"""

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from app.core.config import Settings
from app.jobs.repository import Fence
from app.jobs.schemas import JobSpec
from app.storage import Storage, StorageIntegrityError, StorageKeyError, check_key, get_storage
from app.storage.keys import resume_prefix

logger = logging.getLogger(__name__)
# What a checkpoint needs to resume training; the job's row points only at checkpoints
# written completely, this is checked again before resuming.
CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt", "config.json")


@dataclass(frozen=True)
class Attempt:
    fence: Fence
    tenant_id: str
    spec: JobSpec
    folder: Path
    resume_from: Path | None = None

    @property
    def job_id(self) -> str:
        return self.fence.job_id

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def staging(self) -> Path:
        """Where the finished model is written before it is moved into place."""
        return self.folder / "model"


def attempt_folder(settings: Settings, fence: Fence) -> Path:
    return settings.jobs_dir / fence.job_id / f"attempt-{fence.attempt}"


def is_complete(checkpoint: Path) -> bool:
    has_weights = any(checkpoint.glob("*.safetensors"))
    return has_weights and all((checkpoint / name).is_file() for name in CHECKPOINT_FILES)


def store_checkpoint(storage: Storage, fence: Fence, folder: Path, step: int) -> str:
    """Store the Trainer's checkpoint `folder` (left in place) as a tree; its key, for the
    job's row to point at once stored whole (the commit point of a checkpoint)."""
    key = f"{resume_prefix(fence.job_id)}checkpoint-{step}-a{fence.attempt}"
    store_copy(storage, f"{key}/", folder)
    return key


def store_copy(storage: Storage, prefix: str, folder: Path) -> None:
    """Store the local `folder` as the tree `prefix`, leaving the folder in place (put_tree
    consumes what it stores: it gets a linked copy). A tree this attempt stored already
    (the same step saved twice) is left as it is."""
    copy = folder.with_name(f".{folder.name}.store")
    shutil.rmtree(copy, ignore_errors=True)
    link_tree(folder, copy)
    try:
        storage.put_tree(prefix, copy)
    except FileExistsError:
        pass
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def prune_stored_checkpoints(storage: Storage, fence: Fence, current: str) -> None:
    """Remove the job's stored checkpoints older than `current` (the one its row points at
    now): this attempt's earlier ones and every earlier attempt's. A later attempt's are
    never touched (this one may be a worker that lost its lease and has not noticed)."""
    prefix = resume_prefix(fence.job_id)
    names = {info.key[len(prefix) :].split("/", 1)[0] for info in storage.list(prefix)}
    for name in names:
        attempt = name.rpartition("-a")[2]
        later = attempt.isdigit() and int(attempt) > fence.attempt
        if f"{prefix}{name}" != current and not later:
            storage.delete_prefix(f"{prefix}{name}/")


def adopt_checkpoint(settings: Settings, pointer: str | None, folder: Path) -> Path | None:
    """Bring the job's last complete checkpoint (stored by an earlier attempt, on this
    machine or another) into this attempt's folder and return it; None to start afresh."""
    if not pointer:
        return None
    name = pointer.rsplit("/", 1)[-1].rsplit("-a", 1)[0]  # checkpoint-<step>
    target = folder / "checkpoints" / name
    shutil.rmtree(target, ignore_errors=True)
    try:
        with get_storage(settings).local_dir(f"{check_key(pointer)}/") as stored:
            link_tree(stored, target)
    except (FileNotFoundError, StorageKeyError, StorageIntegrityError):
        shutil.rmtree(target, ignore_errors=True)
        logger.warning("checkpoint %s is missing or incomplete; training starts afresh", pointer)
        return None
    if not is_complete(target):
        shutil.rmtree(target, ignore_errors=True)
        logger.warning("checkpoint %s is incomplete; training starts afresh", pointer)
        return None
    return target


def link_tree(source: Path, target: Path) -> None:
    """A copy of the folder `source` as hard links where the filesystem allows (files are
    never modified after they are written, so sharing them is safe)."""
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_dir():
            link_tree(item, target / item.name)
            continue
        try:
            os.link(item, target / item.name)
        except OSError:
            shutil.copy2(item, target / item.name)


def prune_attempts(settings: Settings, fence: Fence) -> None:
    """Remove the folders of the job's earlier attempts (their checkpoint was adopted)."""
    for folder in (settings.jobs_dir / fence.job_id).glob("attempt-*"):
        number = folder.name.removeprefix("attempt-")
        if number.isdigit() and int(number) < fence.attempt:
            shutil.rmtree(folder, ignore_errors=True)
