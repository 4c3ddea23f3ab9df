"""Keeps a running job's lease alive, carries stop requests into the training loop, and makes
every database write of the attempt a fenced one."""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from app.core.config import Settings
from app.core.db import session_scope
from app.jobs.repository import Fence, JobRepository, LeaseLost
from app.jobs.states import StopReason
from worker.errors import TrainingInterrupted
from worker.retry import retry_db

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Progress:
    epoch: float = 0.0
    step: int = 0
    total_steps: int | None = None


_active: set["LeaseKeeper"] = set()


def stop_all_training(reason: StopReason) -> None:
    """Ask every job training in this process to stop at its next step (e.g. on shutdown)."""
    for lease in list(_active):
        lease.request_stop(reason)


@dataclass(eq=False)
class LeaseKeeper:
    """A heartbeat thread: renews the lease, writes progress, watches for cancel.

    `stop_reason` becomes a StopReason; the training code reads it at every step and stage
    boundary (`check`). The lease counts as lost when renewing it is refused, or has failed
    for longer than a lease lasts (by then another worker may own the job).
    """

    fence: Fence
    settings: Settings
    progress: Progress = field(default_factory=Progress)
    stop_reason: StopReason | None = None
    _renewed_at: float = field(default_factory=time.monotonic)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def job_id(self) -> str:
        return self.fence.job_id

    def start(self) -> None:
        _active.add(self)
        self._renewed_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="tuneserve-lease", daemon=True)
        self._thread.start()

    def close(self) -> None:
        _active.discard(self)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def request_stop(self, reason: StopReason) -> None:
        # A lost lease overrides anything else: the attempt must write nothing more.
        if self.stop_reason is None or reason is StopReason.lease_lost:
            self.stop_reason = reason

    def check(self) -> None:
        """Raise TrainingInterrupted if the attempt was asked to stop (stage boundaries)."""
        if self.stop_reason is not None:
            raise TrainingInterrupted(self.stop_reason)

    def beat(self) -> None:
        """One renewal; a database error is retried at the next beat, within the lease."""
        progress = {
            "epoch": self.progress.epoch,
            "step": self.progress.step,
            "total_steps": self.progress.total_steps,
        }
        try:
            with session_scope() as session:
                cancel = JobRepository(session).renew(
                    self.fence, self.settings.lease_seconds, progress
                )
        except SQLAlchemyError as exc:
            unrenewed = time.monotonic() - self._renewed_at
            logger.warning(
                "lease renewal for %s failed (%.0f s since the last one): %s",
                self.job_id,
                unrenewed,
                exc,
            )
            if unrenewed >= self.settings.lease_seconds:
                logger.warning("lease of job %s has run out; stopping", self.job_id)
                self.request_stop(StopReason.lease_lost)
            return
        self._renewed_at = time.monotonic()
        if cancel is None:
            logger.warning("lost the lease of job %s; stopping", self.job_id)
            self.request_stop(StopReason.lease_lost)
        elif cancel:
            self.request_stop(StopReason.cancelled)

    def write(self, action: Callable[[JobRepository], T]) -> T:
        """A fenced write of this attempt (events, metrics rows, checkpoint pointer), retried
        through a short database outage. When the fence no longer holds, training stops at
        once: nothing more is written."""
        if self.stop_reason is StopReason.lease_lost:
            raise TrainingInterrupted(StopReason.lease_lost)

        def attempt() -> T:
            with session_scope() as session:
                return action(JobRepository(session))

        try:
            return retry_db(attempt)
        except LeaseLost:
            self.request_stop(StopReason.lease_lost)
            raise TrainingInterrupted(StopReason.lease_lost) from None

    def _run(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            self.beat()
