import pytest
from pydantic import ValidationError

from app.jobs.schemas import FilesDataset, HubDataset, JobSpec
from app.jobs.service import spec_hash

BASE = {
    "base_model": "tiny",
    "dataset": {"source": "files", "train_file_id": "f1", "validation_file_id": "f2"},
    "text_column": "sentence",
    "label_column": "label",
}


def test_defaults_follow_the_course() -> None:
    spec = JobSpec.model_validate(BASE)
    hp = spec.hyperparameters
    assert (hp.num_train_epochs, hp.learning_rate, hp.per_device_train_batch_size) == (3, 5e-5, 8)
    assert spec.metrics is None  # the task's defaults, chosen when the task is known
    assert spec.metric_names("single_label_classification") == ["accuracy", "f1"]
    assert isinstance(spec.dataset, FilesDataset)


def test_hub_dataset() -> None:
    spec = JobSpec.model_validate(
        dict(BASE, dataset={"source": "hub", "name": "nyu-mll/glue", "config": "mrpc"})
    )
    assert isinstance(spec.dataset, HubDataset)
    assert spec.dataset.validation_split == "validation"


@pytest.mark.parametrize(
    "change",
    [
        {"unknown": 1},
        {"hyperparameters": {"num_train_epochs": 0}},
        {"hyperparameters": {"per_device_train_batch_size": -1}},
        {"hyperparameters": {"learning_rate": 0}},
        {"hyperparameters": {"epochs": 3}},
        {"metrics": ["bleu"]},
        {"metrics": []},
        {"dataset": {"source": "ftp", "url": "x"}},
        {"dataset": {"source": "hub", "name": "../etc"}},
    ],
)
def test_invalid_specs_are_rejected(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        JobSpec.model_validate(dict(BASE, **change))


def test_spec_hash_ignores_defaults_spelled_out() -> None:
    explicit = dict(BASE, hyperparameters={"num_train_epochs": 3})
    assert spec_hash(JobSpec.model_validate(BASE)) == spec_hash(JobSpec.model_validate(explicit))
    other = dict(BASE, hyperparameters={"num_train_epochs": 4})
    assert spec_hash(JobSpec.model_validate(BASE)) != spec_hash(JobSpec.model_validate(other))


def test_metric_for_best_model_follows_the_task_the_spec_implies() -> None:
    """A multi-label spec (its label_delimiter says so) could not pick f1_micro: it was checked
    against single-label's defaults."""
    base = {
        "base_model": "m",
        "dataset": {"source": "files", "train_file_id": "file_a"},
        "text_column": "text",
        "label_column": "labels",
    }
    multi = JobSpec.model_validate(
        {**base, "label_delimiter": ",", "hyperparameters": {"metric_for_best_model": "f1_micro"}}
    )
    assert multi.best_metric() == ("f1_micro", True)
    # Left to inference: any task's default metric, checked again by the worker.
    inferred = JobSpec.model_validate({**base, "hyperparameters": {"metric_for_best_model": "mae"}})
    assert inferred.best_metric("regression") == ("mae", False)
    with pytest.raises(ValidationError, match="f1_micro"):
        JobSpec.model_validate(
            {
                **base,
                "task": "single_label_classification",
                "hyperparameters": {"metric_for_best_model": "f1_micro"},
            }
        )
