"""One attempt at a job: what it trains, where it writes, and the checkpoint it resumes from.

Each attempt writes into a folder of its own (`jobs/<job>/attempt-<n>/`): a worker that was
paused past its lease and wakes up again can only touch its own folder, never the folder of
the attempt that took over.
"""

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from app.core.config import Settings
from app.jobs.repository import Fence
from app.jobs.schemas import JobSpec

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


def adopt_checkpoint(settings: Settings, pointer: str | None, folder: Path) -> Path | None:
    """Bring the job's last complete checkpoint (written by an earlier attempt) into this
    attempt's folder, as hard links where the filesystem allows (files are never modified
    after they are written, so sharing them is safe), and return it; None to start afresh."""
    if not pointer:
        return None
    source = (settings.jobs_dir / pointer).resolve()
    if settings.jobs_dir.resolve() not in source.parents or not is_complete(source):
        logger.warning("checkpoint %s is missing or incomplete; training starts afresh", pointer)
        return None
    target = folder / "checkpoints" / source.name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.is_dir():
            shutil.copytree(item, target / item.name)
            continue
        try:
            os.link(item, target / item.name)
        except OSError:
            shutil.copy2(item, target / item.name)
    return target


def prune_attempts(settings: Settings, fence: Fence) -> None:
    """Remove the folders of the job's earlier attempts (their checkpoint was adopted)."""
    for folder in (settings.jobs_dir / fence.job_id).glob("attempt-*"):
        number = folder.name.removeprefix("attempt-")
        if number.isdigit() and int(number) < fence.attempt:
            shutil.rmtree(folder, ignore_errors=True)
