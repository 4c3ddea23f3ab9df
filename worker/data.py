"""Loading a job's train and validation splits and turning labels into ids."""

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from app.core.config import Settings
from app.core.db import session_scope
from app.core.redact import public_message
from app.files.parsing import FileParseError, read_table
from app.files.repository import FileRepository
from app.jobs.schemas import FilesDataset, HubDataset, JobSpec
from app.storage import get_storage
from app.storage.keys import file_key
from worker.errors import JobFailure
from worker.hub import (
    HubUnavailable,
    dataset_bytes_limit,
    decompressed_bytes,
    fetch_dataset,
    human_bytes,
)
from worker.tasks import Task, task_for


@dataclass
class LabeledSplits:
    train: pd.DataFrame
    validation: pd.DataFrame
    task: Task  # the task kind, its label names (ids in list order) and targets
    held_out_ratio: float | None = None  # validation rows held out of the train file

    @property
    def labels(self) -> list[str]:
        return self.task.labels

    def summary(self, label_column: str) -> dict[str, object]:
        """What the job records about its data (`JobRead.data`)."""
        targets = self.task.targets(self.train[label_column], "train")
        summary: dict[str, object] = {
            "task": self.task.kind,
            "task_inferred": self.task.spec.task is None,
            "train_rows": len(self.train),
            "validation_rows": len(self.validation),
            "validation": (
                {"source": "held_out", "ratio": self.held_out_ratio}
                if self.held_out_ratio is not None
                else {"source": "split"}
            ),
            "labels": self.labels,
        }
        if self.task.kind == "regression":
            values = [float(t) for t in targets]
            summary["train_label_range"] = [min(values), max(values)] if values else []
        elif self.task.kind == "multi_label_classification":
            counts = [int(sum(row[i] for row in targets)) for i in range(len(self.labels))]
            summary["train_label_counts"] = dict(zip(self.labels, counts, strict=True))
        else:
            counts = [targets.count(i) for i in range(len(self.labels))]
            summary["train_label_counts"] = dict(zip(self.labels, counts, strict=True))
        return summary


def load_splits(
    settings: Settings, tenant_id: str, spec: JobSpec, job_dir: Path | None = None
) -> LabeledSplits:
    """The job's two splits as frames of strings, and the label names (ids in list order).

    A Hub dataset is fetched into a folder under `job_dir` (the job's own folder; a temporary
    one under the jobs directory when not given), removed again once the splits are in memory.
    """
    held_out: float | None = None
    if isinstance(spec.dataset, HubDataset):
        with hub_work_dir(settings, job_dir, "hub-dataset") as work:
            train, validation, names = _load_hub(settings, spec.dataset, spec.label_column, work)
    else:
        train, validation = _load_files(settings, tenant_id, spec.dataset)
        names = None
        if validation is None:
            ratio = spec.dataset.validation_split_ratio
            train, validation = hold_out(train, spec.label_column, ratio, spec.hyperparameters.seed)
            held_out = ratio
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
    task = task_for(spec, train, settings.max_labels)
    if names is not None and task.kind == "single_label_classification":
        # A Hub ClassLabel: the dataset's own label order and names.
        task.raw = list(names)
        task.labels = [(spec.label_names or {}).get(name, name) for name in names]
    task.targets(validation[spec.label_column], "validation")  # unknown labels fail here
    return LabeledSplits(train=train, validation=validation, task=task, held_out_ratio=held_out)


def hold_out(
    frame: pd.DataFrame, label_column: str, ratio: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded, stratified split of `frame` into (train, validation): the same rows for the
    same file and seed, on every attempt. Labels too rare to stratify are split at random."""
    from sklearn.model_selection import train_test_split

    labels = frame[label_column].astype(str).str.strip()
    counts = labels.value_counts()
    n_validation = max(1, round(len(frame) * ratio))
    stratify = labels if counts.min() >= 2 and n_validation >= len(counts) else None
    if len(frame) < 2:
        raise JobFailure(
            "invalid_file", "The train file needs at least 2 rows to hold out a validation split."
        )
    train, validation = train_test_split(
        frame, test_size=n_validation, random_state=seed, stratify=stratify, shuffle=True
    )
    return train.reset_index(drop=True), validation.reset_index(drop=True)


@contextmanager
def hub_work_dir(settings: Settings, job_dir: Path | None, name: str) -> Iterator[Path]:
    """An empty folder for a Hub download, in the job's folder, removed afterwards."""
    if job_dir is not None:
        folder = job_dir / name
        shutil.rmtree(folder, ignore_errors=True)  # what an earlier attempt left
        folder.mkdir(parents=True)
    else:
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=settings.jobs_dir))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _load_files(
    settings: Settings, tenant_id: str, dataset: FilesDataset
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The train frame, and the validation frame (None when none was given)."""
    frames: list[pd.DataFrame] = []
    ids = [
        (split, file_id)
        for split, file_id in (
            ("train", dataset.train_file_id),
            ("validation", dataset.validation_file_id),
        )
        if file_id is not None
    ]
    with session_scope() as session:
        records = [FileRepository(session).get(tenant_id, file_id) for _, file_id in ids]
    storage = get_storage(settings)
    for (split, file_id), record in zip(ids, records, strict=True):
        if record is None:
            raise JobFailure("unknown_file", f"The {split} file '{file_id}' no longer exists.")
        try:
            with storage.local_file(file_key(record.id, record.format)) as path:
                frames.append(
                    read_table(path, record.format, header=record.header, names=record.columns)
                )
        except (FileParseError, OSError) as exc:
            raise JobFailure(
                "invalid_file",
                f"Cannot read the {split} file: {public_message(exc, with_type=False)}",
            ) from exc
    return frames[0], frames[1] if len(frames) > 1 else None


def _load_hub(
    settings: Settings, dataset: HubDataset, label_column: str, work: Path
) -> tuple[pd.DataFrame, pd.DataFrame, list[str] | None]:
    """Only the repository's own files, within the upload limits (bytes, rows, labels)."""
    import datasets

    where = f"'{dataset.name}'{f' ({dataset.config})' if dataset.config else ''}"
    try:
        folder = fetch_dataset(settings, dataset.name, dataset.config, work / "repo")
    except HubUnavailable as exc:
        raise JobFailure("dataset_unavailable", str(exc)) from exc
    limit = dataset_bytes_limit(settings)
    size = decompressed_bytes(folder, limit)
    if size > limit:
        raise JobFailure(
            "dataset_too_large",
            f"The Hub dataset {where} holds more than {human_bytes(limit)} once decompressed; "
            "this service allows no more (twice the upload limit).",
        )
    try:
        loaded = [
            datasets.load_dataset(
                str(folder), dataset.config, split=split, cache_dir=str(work / "cache")
            )
            for split in (dataset.train_split, dataset.validation_split)
        ]
    except JobFailure:
        raise
    except Exception as exc:  # the datasets library raises many types for a bad split or file
        raise JobFailure(
            "dataset_unavailable",
            f"Cannot load the Hub dataset {where}: {public_message(exc)}. Check the config and "
            "split names.",
        ) from exc
    for split_name, split in zip(
        (dataset.train_split, dataset.validation_split), loaded, strict=True
    ):
        assert isinstance(split, datasets.Dataset)
        if split.num_rows > settings.max_upload_rows:
            raise JobFailure(
                "too_many_rows",
                f"The {split_name!r} split of {where} has {split.num_rows} rows; this service "
                f"allows at most {settings.max_upload_rows} per split.",
            )
    names = None
    feature = loaded[0].features.get(label_column)
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)
        if len(names) > settings.max_labels:
            raise JobFailure(
                "invalid_labels",
                f"The label column has {len(names)} classes (at most {settings.max_labels} are "
                "allowed); is it really a label column?",
            )
    frames = []
    for split_name, split in zip(
        (dataset.train_split, dataset.validation_split), loaded, strict=True
    ):
        frame = split.to_pandas()
        assert isinstance(frame, pd.DataFrame)
        if names is not None and label_column in frame.columns:
            frame[label_column] = _class_names(frame[label_column], names, split_name)
        frames.append(frame.astype(str))
    return frames[0], frames[1], names


def _class_names(ids: pd.Series, names: list[str], split: str) -> list[str]:
    """ClassLabel ids as names; a row without a label (-1, as in GLUE's test splits) fails the job."""
    unlabelled = [i for i in ids if not 0 <= int(i) < len(names)]
    if unlabelled:
        raise JobFailure(
            "invalid_labels",
            f"The {split!r} split has {len(unlabelled)} of {len(ids)} rows without a label "
            f"({unlabelled[0]}); a Hub test split usually has none (GLUE's do not): train and "
            "validate on labelled splits.",
        )
    return [names[int(i)] for i in ids]
