"""The keys of each kind of stored object (the layout under the data directory)."""

KINDS = ("files", "models", "checkpoints", "outputs")


def file_key(file_id: str, fmt: str) -> str:
    return f"files/{file_id}.{fmt}"


def model_prefix(model_id: str) -> str:
    return f"models/{model_id}/"


def checkpoints_prefix(job_id: str) -> str:
    """The kept epoch weights of a job that has succeeded (`epoch-<n>-a<k>/` under it)."""
    return f"checkpoints/{job_id}/"


def resume_prefix(job_id: str) -> str:
    """A running job's checkpoints to resume from (weights and optimizer state), each a tree
    `checkpoint-<step>-a<attempt>/`: a name no other attempt writes."""
    return f"{checkpoints_prefix(job_id)}resume/"


def outputs_prefix(job_id: str) -> str:
    """Files a job produced (batch predictions, evaluations)."""
    return f"outputs/{job_id}/"
