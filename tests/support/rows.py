"""Rows that tests write straight into the database, as the worker would."""

from app.auth.repository import TenantRepository
from app.core.db import session_scope
from app.tables import JobMetric, TrainedModel, new_id


def add_trained_model(tenant: str, job_id: str, labels: list[str] | None = None) -> str:
    """A model row of a tenant's job (no weights: enough for reads and checks); its id."""
    with session_scope() as session:
        owner = TenantRepository(session).get_by_name(tenant)
        assert owner is not None
        model = TrainedModel(
            id=new_id("mdl"),
            tenant_id=owner.id,
            job_id=job_id,
            base_model="tiny",
            labels=labels or ["negative", "positive"],
            text_pair=False,
            metrics={},
        )
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
