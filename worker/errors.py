"""Failures a job cannot recover from by retrying (bad data, missing model)."""

from app.jobs.states import StopReason


class JobFailure(Exception):
    """Ends the job as failed at once, with a stable code and a message the user can act on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TrainingInterrupted(Exception):
    """Training stopped before the end for a reason that is not the job's fault."""

    def __init__(self, reason: StopReason) -> None:
        super().__init__(reason.value)
        self.reason = reason
