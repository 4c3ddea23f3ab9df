"""Hub datasets and base models load only their repository's own files, within the limits.

The Hub is replaced by a local Hugging Face cache (HF_HUB_OFFLINE=1), which is where
`snapshot_download` looks when the Hub cannot be reached.
"""

from pathlib import Path
from typing import Any

import pytest

from app.core.config import Settings
from app.jobs.schemas import JobSpec
from tests.support.hub_cache import add_hub_repo, add_model_folder, dataset_card
from worker.data import load_splits
from worker.errors import JobFailure
from worker.hub import fetch_base_model, hub_token
from worker.training import load_base

CSV = "sentence,label\n" + "".join(f"good movie {i},pos\nbad movie {i},neg\n" for i in range(10))
SPLIT_FILES = """
configs:
- config_name: default
  data_files:
  - split: train
    path: {train}
  - split: validation
    path: {validation}
"""


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "data", base_models_dir=tmp_path / "bases")
    settings.ensure_dirs()
    return settings


def hub_spec(name: str, **dataset: Any) -> JobSpec:
    return JobSpec.model_validate(
        {
            "base_model": "org/tiny",
            "dataset": {"source": "hub", "name": name, **dataset},
            "text_column": "sentence",
            "label_column": "label",
        }
    )


def failure(settings: Settings, spec: JobSpec) -> JobFailure:
    with pytest.raises(JobFailure) as caught:
        load_splits(settings, "tenant", spec, job_dir=settings.jobs_dir / "job_1")
    return caught.value


def test_benign_dataset_loads_and_its_folder_is_removed(
    hub_cache: Path, settings: Settings
) -> None:
    card = dataset_card(SPLIT_FILES.format(train="data/train.csv", validation="data/dev.csv"))
    add_hub_repo(
        hub_cache,
        "dataset",
        "me/good",
        {"README.md": card, "data/train.csv": CSV, "data/dev.csv": CSV, "loader.py": "1/0"},
    )
    job_dir = settings.jobs_dir / "job_1"
    splits = load_splits(settings, "tenant", hub_spec("me/good"), job_dir=job_dir)
    assert len(splits.train) == len(splits.validation) == 20
    assert splits.labels == ["neg", "pos"]
    assert not (job_dir / "hub-dataset").exists()
    # without a job folder, a temporary one under the jobs directory, removed as well
    load_splits(settings, "tenant", hub_spec("me/good"))
    assert [p.name for p in settings.jobs_dir.iterdir()] == ["job_1"]


@pytest.mark.parametrize(
    "train",
    [
        "{uploads}/*.csv",  # every tenant's uploads, by absolute path
        "{uploads}/file_secret.csv",
        "http://169.254.169.254/latest/meta-data",  # SSRF
        "https://example.com/x.csv",
        "hf://datasets/other/private/*.csv",
        "zip://*.csv::https://example.com/a.zip",
        "../../files/*.csv",
        "data/../../../x.csv",
        "~/x.csv",
        "C:\\data\\x.csv",
    ],
)
def test_card_data_files_outside_the_repository_are_refused(
    hub_cache: Path, settings: Settings, train: str
) -> None:
    secret = settings.uploads_dir / "file_secret.csv"
    secret.write_text("sentence,label\nanother tenant's text,pos\nmore,neg\n")
    train = train.format(uploads=settings.uploads_dir)
    card = dataset_card(SPLIT_FILES.format(train=f"'{train}'", validation="data/dev.csv"))
    add_hub_repo(hub_cache, "dataset", "me/x", {"README.md": card, "data/dev.csv": CSV})
    caught = failure(settings, hub_spec("me/x"))
    assert caught.code == "invalid_dataset", caught.message
    assert "outside the repository" in caught.message


def test_a_hostile_config_is_refused_even_when_another_is_chosen(
    hub_cache: Path, settings: Settings
) -> None:
    card = dataset_card(
        """
configs:
- config_name: fine
  data_files: data/*.csv
- config_name: evil
  data_dir: /
  data_files: etc/passwd
"""
    )
    add_hub_repo(hub_cache, "dataset", "me/mixed", {"README.md": card, "data/a.csv": CSV})
    assert failure(settings, hub_spec("me/mixed", config="fine")).code == "invalid_dataset"


def glue_like_parquet(folder: Path, test_labels: list[int], names: list[str]) -> None:
    import datasets

    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=names)}
    )
    for split, labels in (
        ("train", [0, 1] * 10),
        ("validation", [1, 0] * 5),
        ("test", test_labels),
    ):
        rows = {"sentence": [f"text {i}" for i in range(len(labels))], "label": labels}
        dataset = datasets.Dataset.from_dict(rows, features=features)
        (folder / "mrpc").mkdir(parents=True, exist_ok=True)
        dataset.to_parquet(str(folder / "mrpc" / f"{split}-00000-of-00001.parquet"))


GLUE_CARD = """
configs:
- config_name: mrpc
  data_files:
  - split: train
    path: mrpc/train-*
  - split: validation
    path: mrpc/validation-*
  - split: test
    path: mrpc/test-*
"""


def test_glue_like_parquet_class_labels_and_an_unlabelled_test_split(
    hub_cache: Path, settings: Settings
) -> None:
    snapshot = add_hub_repo(
        hub_cache, "dataset", "org/glue", {"README.md": dataset_card(GLUE_CARD)}
    )
    glue_like_parquet(snapshot, [-1] * 8, ["not_equivalent", "equivalent"])
    splits = load_splits(settings, "tenant", hub_spec("org/glue", config="mrpc"))
    assert splits.labels == ["not_equivalent", "equivalent"]
    assert set(splits.train["label"]) == {"not_equivalent", "equivalent"}
    for train, validation in (("test", "validation"), ("train", "test")):
        spec = hub_spec("org/glue", config="mrpc", train_split=train, validation_split=validation)
        caught = failure(settings, spec)
        assert caught.code == "invalid_labels", caught.message
        assert "8 of 8 rows without a label" in caught.message


def test_class_label_names_count_against_max_labels(hub_cache: Path, settings: Settings) -> None:
    snapshot = add_hub_repo(
        hub_cache, "dataset", "org/many", {"README.md": dataset_card(GLUE_CARD)}
    )
    glue_like_parquet(snapshot, [0], [f"class{i}" for i in range(settings.max_labels + 1)])
    caught = failure(settings, hub_spec("org/many", config="mrpc"))
    assert caught.code == "invalid_labels" and "classes" in caught.message


def test_hub_splits_have_the_upload_limits(hub_cache: Path, settings: Settings) -> None:
    card = dataset_card(SPLIT_FILES.format(train="train.csv", validation="dev.csv"))
    add_hub_repo(
        hub_cache, "dataset", "me/big", {"README.md": card, "train.csv": CSV, "dev.csv": CSV}
    )
    rows = settings.model_copy(update={"max_upload_rows": 19})
    assert failure(rows, hub_spec("me/big")).code == "too_many_rows"
    small = settings.model_copy(update={"max_upload_bytes": len(CSV) - 1})
    caught = failure(small, hub_spec("me/big"))
    assert caught.code == "dataset_too_large", caught.message


def test_compressed_parquet_counts_its_decompressed_size(
    hub_cache: Path, settings: Settings
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    snapshot = add_hub_repo(
        hub_cache, "dataset", "org/bomb", {"README.md": dataset_card(GLUE_CARD)}
    )
    glue_like_parquet(snapshot, [0], ["a", "b"])
    tight = settings.model_copy(update={"max_upload_bytes": 500_000})  # 1 MB per dataset
    load_splits(tight, "tenant", hub_spec("org/bomb", config="mrpc"))
    bomb = snapshot / "mrpc" / "train-00000-of-00001.parquet"
    pq.write_table(
        pa.table({"sentence": ["x" * 1000] * 2000, "label": [0, 1] * 1000}),
        bomb,
        compression="zstd",
    )
    assert bomb.stat().st_size < 100_000  # 2 MB of text, compressed
    caught = failure(tight, hub_spec("org/bomb", config="mrpc"))
    assert caught.code == "dataset_too_large" and "decompressed" in caught.message


def test_base_model_fetches_only_config_tokenizer_and_safetensors(
    hub_cache: Path, settings: Settings, tiny_model_dir: Path, tmp_path: Path
) -> None:
    extra = {"pytorch_model.bin": b"pickle", "evil.py": b"1/0", "onnx/model.onnx": b"x"}
    add_model_folder(hub_cache, "org/tiny", tiny_model_dir, extra)
    folder = fetch_base_model(settings, "org/tiny", tmp_path / "fetched")
    names = {p.name for p in folder.rglob("*")}
    assert "model.safetensors" in names and "config.json" in names and "vocab.txt" in names
    assert not names & {"pytorch_model.bin", "evil.py", "onnx", "model.onnx"}
    tokenizer, model = load_base(settings, "org/tiny", ["neg", "pos"], settings.jobs_dir / "j")
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert not (settings.jobs_dir / "j" / "hub-model").exists()


def test_base_model_size_limit_and_missing_weights(
    hub_cache: Path, settings: Settings, tiny_model_dir: Path
) -> None:
    add_model_folder(hub_cache, "org/tiny", tiny_model_dir, {})
    small = settings.model_copy(update={"max_base_model_bytes": 1000})
    with pytest.raises(JobFailure) as caught:
        load_base(small, "org/tiny", ["a", "b"])
    assert caught.value.code == "base_model_too_large"
    pickled: dict[str, bytes | str] = {
        "config.json": (tiny_model_dir / "config.json").read_text(),
        "pytorch_model.bin": b"x",
    }
    add_hub_repo(hub_cache, "model", "org/pickled", pickled)
    with pytest.raises(JobFailure) as caught:
        load_base(settings, "org/pickled", ["a", "b"])
    assert caught.value.code == "base_model_unavailable"
    assert "safetensors" in caught.value.message


def test_a_missing_repository_fails_without_server_paths(
    hub_cache: Path, settings: Settings
) -> None:
    caught = failure(settings, hub_spec("nobody/nothing"))
    assert caught.code == "dataset_unavailable"
    assert str(hub_cache) not in caught.message and str(settings.data_dir) not in caught.message


def test_the_server_token_is_used_only_when_an_operator_allows_it() -> None:
    assert hub_token(Settings()) is False
    assert hub_token(Settings(hub_use_server_token=True)) is None
