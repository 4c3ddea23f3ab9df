"""Rows that tests write straight into the database, as the worker would."""

from app.auth.repository import TenantRepository
from app.core.db import session_scope
from app.tables import Job, JobMetric, JobStatus, TrainedModel, new_id


def job_row(tenant_id: str, status: str = JobStatus.queued, epochs: float = 3.0) -> Job:
    """A job row as the API would write it: not yet started, or (status "succeeded") done."""
    done = status == JobStatus.succeeded
    return Job(
        id=new_id("job"),
        tenant_id=tenant_id,
        status=status,
        spec={},
        total_epochs=epochs,
        epoch=epochs if done else 0.0,
        step=0,
        attempts=1 if done else 0,
        cancel_requested=False,
    )


def model_row(
    tenant_id: str,
    job_id: str,
    labels: list[str] | None = None,
    base_model: str = "tiny",
    text_pair: bool = False,
) -> TrainedModel:
    """A model row as the worker would write it (no weights: enough for reads and checks)."""
    return TrainedModel(
        id=new_id("mdl"),
        tenant_id=tenant_id,
        job_id=job_id,
        base_model=base_model,
        labels=labels or ["negative", "positive"],
        text_pair=text_pair,
        metrics={},
    )


def add_trained_model(tenant: str, job_id: str, labels: list[str] | None = None) -> str:
    """Store a model row of a tenant's job; its id."""
    with session_scope() as session:
        owner = TenantRepository(session).get_by_name(tenant)
        assert owner is not None
        model = model_row(owner.id, job_id, labels)
        session.add(model)
        return model.id


def epoch_metric(job_id: str, epoch: int = 1) -> JobMetric:
    """An epoch's metrics row with fixed scores."""
    return JobMetric(
        job_id=job_id,
        epoch=epoch,
        step=5 * epoch,
        train_loss=0.7,
        eval_loss=0.6,
        metrics={"accuracy": 0.5},
        elapsed_seconds=1.0,
    )
