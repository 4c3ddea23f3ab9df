"""Loading a job's train and validation splits and turning labels into ids."""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from app.core.config import Settings
from app.core.db import session_scope
from app.files.parsing import FileParseError, read_table
from app.files.repository import FileRepository
from app.files.storage import file_path
from app.jobs.schemas import FilesDataset, HubDataset, JobSpec
from worker.errors import JobFailure


@dataclass
class LabeledSplits:
    train: pd.DataFrame
    validation: pd.DataFrame
    labels: list[str]  # id -> label name


def load_splits(settings: Settings, tenant_id: str, spec: JobSpec) -> LabeledSplits:
    if isinstance(spec.dataset, HubDataset):
        train, validation, names = _load_hub(spec.dataset, spec.label_column)
    else:
        train, validation = _load_files(settings, tenant_id, spec.dataset)
        names = None
    for split, frame in (("train", train), ("validation", validation)):
        columns = [spec.text_column, spec.label_column]
        if spec.text_pair_column:
            columns.append(spec.text_pair_column)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise JobFailure(
                "unknown_column",
                f"The {split} split has no column {', '.join(map(repr, missing))}; "
                f"its columns are {', '.join(map(repr, frame.columns))}.",
            )
    labels = names or label_names(train[spec.label_column], settings.max_labels)
    check_labels(validation[spec.label_column], labels)
    return LabeledSplits(train=train, validation=validation, labels=labels)


def _load_files(
    settings: Settings, tenant_id: str, dataset: FilesDataset
) -> tuple[pd.DataFrame, pd.DataFrame]:
    frames = []
    with session_scope() as session:
        records = [
            FileRepository(session).get(tenant_id, i)
            for i in (dataset.train_file_id, dataset.validation_file_id)
        ]
    for split, record, file_id in zip(
        ("train", "validation"),
        records,
        (dataset.train_file_id, dataset.validation_file_id),
        strict=True,
    ):
        if record is None:
            raise JobFailure("unknown_file", f"The {split} file '{file_id}' no longer exists.")
        try:
            frames.append(read_table(file_path(settings, record.id, record.format), record.format))
        except (FileParseError, OSError) as exc:
            raise JobFailure("invalid_file", f"Cannot read the {split} file: {exc}") from exc
    return frames[0], frames[1]


def _load_hub(
    dataset: HubDataset, label_column: str
) -> tuple[pd.DataFrame, pd.DataFrame, list[str] | None]:
    import datasets

    if Path(dataset.name).exists():
        raise JobFailure("invalid_dataset", f"'{dataset.name}' names a path on this worker.")
    try:
        loaded = [
            datasets.load_dataset(dataset.name, dataset.config, split=split)
            for split in (dataset.train_split, dataset.validation_split)
        ]
    except Exception as exc:  # the datasets library raises many types for "not found/offline"
        raise JobFailure(
            "dataset_unavailable",
            f"Cannot load the Hub dataset '{dataset.name}'"
            f"{f' ({dataset.config})' if dataset.config else ''}: {type(exc).__name__}: {exc}. "
            "Check the name, config and split names, and that this worker can reach the Hub "
            "or has the dataset in its local cache.",
        ) from exc
    names = None
    feature = loaded[0].features.get(label_column)
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)
    frames = []
    for split in loaded:
        frame = split.to_pandas()
        assert isinstance(frame, pd.DataFrame)
        if names is not None and label_column in frame.columns:
            frame[label_column] = [
                names[i] if 0 <= i < len(names) else "" for i in frame[label_column]
            ]
        frames.append(frame.astype(str))
    return frames[0], frames[1], names


def label_names(values: pd.Series, max_labels: int) -> list[str]:
    """The distinct labels of the train split, in numeric order when they are all integers."""
    text = values.astype(str).str.strip()
    if (text == "").any():
        row = int((text == "").to_numpy().argmax())
        raise JobFailure("invalid_labels", f"The label column is empty in train row {row + 1}.")
    distinct = sorted(set(text))
    if len(distinct) < 2:
        raise JobFailure(
            "invalid_labels",
            f"The label column has only one value ({distinct[0]!r}); "
            "a classifier needs at least two.",
        )
    if len(distinct) > max_labels:
        raise JobFailure(
            "invalid_labels",
            f"The label column has {len(distinct)} distinct values (at most {max_labels} are "
            "allowed); is it really a label column?",
        )
    try:
        return sorted(distinct, key=int)
    except ValueError:
        return distinct


def check_labels(values: pd.Series, labels: list[str]) -> None:
    unknown = sorted(set(values.astype(str).str.strip()) - set(labels))
    if unknown:
        raise JobFailure(
            "invalid_labels",
            f"The validation split has labels that the train split lacks: {unknown[:5]}.",
        )
