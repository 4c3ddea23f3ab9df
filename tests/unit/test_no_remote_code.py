"""Base models load only as safetensors, and never run code from the model's folder."""

import json
import pickle
import shutil
from pathlib import Path

import pytest

from app.core.config import Settings
from worker.errors import JobFailure
from worker.training import load_base


class WritesMarkerWhenUnpickled:
    """A pickle payload: unpickling it creates a file (what a malicious .bin would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch.__get__(self.marker), ())  # type: ignore[return-value]


def settings_with(base_models: Path) -> Settings:
    return Settings(data_dir=base_models.parent / "data", base_models_dir=base_models)


def test_pickled_weights_are_never_loaded(tiny_model_dir: Path, tmp_path: Path) -> None:
    base_models = tmp_path / "base-models"
    folder = shutil.copytree(tiny_model_dir, base_models / "pickled")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(WritesMarkerWhenUnpickled(marker)))

    with pytest.raises(JobFailure) as failure:
        load_base(settings_with(base_models), "pickled", ["neg", "pos"])
    assert failure.value.code == "base_model_unavailable"
    assert not marker.exists()


def test_code_in_a_model_folder_is_never_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    base_models = tmp_path / "base-models"
    folder = shutil.copytree(tiny_model_dir, base_models / "remote-code")
    marker = tmp_path / "remote-code-ran"
    (folder / "evil.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "from transformers import BertConfig as EvilConfig\n"
        "from transformers import BertForSequenceClassification as EvilModel\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "evil-remote"
    config["auto_map"] = {
        "AutoConfig": "evil.EvilConfig",
        "AutoModelForSequenceClassification": "evil.EvilModel",
    }
    (folder / "config.json").write_text(json.dumps(config))

    with pytest.raises(JobFailure) as failure:
        load_base(settings_with(base_models), "remote-code", ["neg", "pos"])
    assert failure.value.code == "base_model_unavailable"
    assert not marker.exists()


def test_the_same_folder_with_safetensors_loads(tiny_model_dir: Path, tmp_path: Path) -> None:
    base_models = tmp_path / "base-models"
    shutil.copytree(tiny_model_dir, base_models / "fine")
    tokenizer, model = load_base(settings_with(base_models), "fine", ["neg", "pos"])
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert tokenizer("good movie")["input_ids"]
