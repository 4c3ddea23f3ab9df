"""A job's lifecycle in one place: its statuses, event types, stop reasons and outcomes, and
the table of allowed transitions.

Every change of a job's status is one `Transition`, applied by `JobRepository.apply` as one
conditional UPDATE plus the transition's event, in one transaction. A status, event or
transition that is not listed here does not type-check.
"""

from dataclasses import dataclass
from enum import StrEnum


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


class JobKind(StrEnum):
    """What a job runs: a fine-tune, or a batch prediction over a file (`bpj_` ids). Both share
    this lifecycle, its leases, events, cancel and recovery."""

    train = "train"
    batch_predict = "batch_predict"


class EventType(StrEnum):
    """The entries of a job's event log (`job_events.type`)."""

    queued = "queued"
    started = "started"
    train_loss = "train_loss"
    epoch_finished = "epoch_finished"
    checkpoint_saved = "checkpoint_saved"
    cancel_requested = "cancel_requested"
    retried = "retried"
    cancelled = "cancelled"
    failed = "failed"
    succeeded = "succeeded"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_EVENTS


TERMINAL_EVENTS = frozenset({EventType.succeeded, EventType.failed, EventType.cancelled})


class StopReason(StrEnum):
    """Why a worker stops training before the end."""

    cancelled = "cancelled"  # the user asked
    lease_lost = "lease_lost"  # another worker may own the job now: write nothing more
    shutdown = "shutdown"  # warm shutdown: checkpoint and give the job back


class Outcome(StrEnum):
    """How one delivery of a training message ended, for logs and worker metrics."""

    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    requeued = "requeued"
    skipped = "skipped"
    lease_lost = "lease_lost"


class RetryReason(StrEnum):
    """`retried` events' reason, and the error a job carries while it waits again."""

    worker_lost = "worker_lost"  # its lease expired: the worker died or hung (a failure)
    worker_shutdown = "worker_shutdown"  # warm shutdown (not a failure)
    training_error = "training_error"  # a crash (a failure)
    out_of_memory = "out_of_memory"  # a crash (a failure)


@dataclass(frozen=True)
class Transition:
    """A named change of status: from which statuses, to which, and the event it writes."""

    name: str
    sources: frozenset[JobStatus]
    target: JobStatus
    event: EventType
    fenced: bool  # only the lease holder (owner + attempt) may apply it


_Q, _R = frozenset({JobStatus.queued}), frozenset({JobStatus.running})

CLAIM = Transition("claim", _Q, JobStatus.running, EventType.started, fenced=False)
CANCEL_QUEUED = Transition("cancel_queued", _Q, JobStatus.cancelled, EventType.cancelled, False)
SUCCEED = Transition("succeed", _R, JobStatus.succeeded, EventType.succeeded, fenced=True)
FAIL = Transition("fail", _R, JobStatus.failed, EventType.failed, fenced=True)
CANCEL_RUNNING = Transition("cancel", _R, JobStatus.cancelled, EventType.cancelled, fenced=True)
RELEASE = Transition("release", _R, JobStatus.queued, EventType.retried, fenced=True)
# The reaper's: a running job whose lease has expired (checked against the database's clock).
REAP_REQUEUE = Transition("reap_requeue", _R, JobStatus.queued, EventType.retried, False)
REAP_FAIL = Transition("reap_fail", _R, JobStatus.failed, EventType.failed, fenced=False)
REAP_CANCEL = Transition("reap_cancel", _R, JobStatus.cancelled, EventType.cancelled, False)

TRANSITIONS = (
    CLAIM,
    CANCEL_QUEUED,
    SUCCEED,
    FAIL,
    CANCEL_RUNNING,
    RELEASE,
    REAP_REQUEUE,
    REAP_FAIL,
    REAP_CANCEL,
)


def allowed(source: JobStatus, target: JobStatus) -> bool:
    """Whether any transition leads from `source` to `target`."""
    return any(source in t.sources and t.target is target for t in TRANSITIONS)
