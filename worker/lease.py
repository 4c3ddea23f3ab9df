"""Keeps a running job's lease alive and carries stop requests into the training loop."""

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from app.core.config import Settings
from app.core.db import session_scope
from app.jobs.repository import JobRepository

logger = logging.getLogger(__name__)


@dataclass
class Progress:
    epoch: float = 0.0
    step: int = 0
    total_steps: int | None = None


_active: set["LeaseKeeper"] = set()


def stop_all_training(reason: str) -> None:
    """Ask every job training in this process to stop at its next step (e.g. on shutdown)."""
    for lease in list(_active):
        lease.request_stop(reason)


@dataclass(eq=False)
class LeaseKeeper:
    """A heartbeat thread: renews the lease, writes progress, watches for cancel.

    `stop_reason` becomes "cancelled", "lease_lost" or "shutdown"; the training callback reads
    it at every step, so training stops at the next step boundary.
    """

    job_id: str
    owner: str
    settings: Settings
    progress: Progress = field(default_factory=Progress)
    stop_reason: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        _active.add(self)
        self._thread = threading.Thread(target=self._run, name="tuneserve-lease", daemon=True)
        self._thread.start()

    def close(self) -> None:
        _active.discard(self)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    def beat(self) -> None:
        """One renewal; a database error is retried at the next beat, within the lease."""
        try:
            with session_scope() as session:
                job = JobRepository(session).renew_lease(
                    self.job_id,
                    self.owner,
                    self.settings.lease_seconds,
                    {
                        "epoch": self.progress.epoch,
                        "step": self.progress.step,
                        "total_steps": self.progress.total_steps,
                    },
                )
                cancel_requested = job is not None and job.cancel_requested
        except SQLAlchemyError as exc:
            logger.warning("lease renewal for %s failed, will retry: %s", self.job_id, exc)
            return
        if job is None:
            logger.warning("lost the lease of job %s; stopping", self.job_id)
            self.request_stop("lease_lost")
        elif cancel_requested:
            self.request_stop("cancelled")

    def _run(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            self.beat()
