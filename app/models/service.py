"""Reading a model with its card's facts, deleting a model, and refreshing its card."""

from sqlalchemy.orm import Session

from app.auth.repository import TenantRepository
from app.core.config import Settings
from app.core.errors import ApiError
from app.models.card import Evaluation, ModelFacts, load_facts, store_model_card
from app.models.schemas import ModelCard, ModelRead
from app.storage import delete_after_commit, get_storage
from app.storage.keys import model_prefix
from app.tables import TrainedModel
from app.usage.repository import InUseRepository, evaluation_jobs


def model_evaluations(session: Session, model: TrainedModel) -> list[Evaluation]:
    """Evaluations run on the model since training: its batch predictions of labelled files."""
    evaluations = []
    for job in evaluation_jobs(session, model.tenant_id, model.id):
        result = job.result or {}
        if not result.get("metrics"):
            continue  # a file without labels: predictions only
        matrix = (result.get("confusion_matrix") or {}).get("matrix")
        evaluations.append(
            Evaluation(
                id=job.id,
                file_id=str((job.spec or {}).get("file_id")),
                rows=int(result.get("evaluated_rows") or result.get("rows") or 0),
                metrics={k: float(v) for k, v in result["metrics"].items()},
                created_at=(job.finished_at or job.created_at).isoformat(),
                confusion_matrix=matrix,
            )
        )
    return evaluations


def model_facts(session: Session, model: TrainedModel) -> ModelFacts:
    return load_facts(session, model, model_evaluations(session, model))


def model_read(session: Session, model: TrainedModel) -> ModelRead:
    """The model with its card's facts as JSON."""
    read = ModelRead.model_validate(model)
    facts = model_facts(session, model).as_json()
    read.card = ModelCard.model_validate(facts)
    return read


def refresh_model_card(session: Session, settings: Settings, model: TrainedModel) -> None:
    """Rewrite the model's README.md from its rows (after its facts changed) and record the
    folder's new size."""
    storage = get_storage(settings)
    store_model_card(storage, model_facts(session, model))
    model.size_bytes = storage.size(model_prefix(model.id))


def delete_model(session: Session, settings: Settings, model: TrainedModel) -> None:
    """The row, then (once committed) the folder. A model that a queued or running job starts
    from or predicts with answers 409 `model_in_use`."""
    TenantRepository(session).lock(model.tenant_id)  # no job can start from it meanwhile
    job_id = InUseRepository(session).active_job_using(model.tenant_id, model_id=model.id)
    if job_id is not None:
        raise ApiError(
            409,
            "model_in_use",
            f"Job '{job_id}' uses model '{model.id}'; delete it once that job has ended, or "
            "cancel the job.",
        )
    session.delete(model)
    session.flush()
    delete_after_commit(session, get_storage(settings), model_prefix(model.id))
