"""The files of a saved model that a user may load: weights as safetensors, config, tokenizer.
Never the Trainer's pickles (training_args.bin, optimizer.pt, rng states)."""

import os
import shutil
from pathlib import Path

MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".txt", ".model", ".jinja", ".md")


def is_model_file(name: str) -> bool:
    """Whether a file of this name belongs in a model folder a user may load."""
    return name.endswith(MODEL_FILE_SUFFIXES) and name != "trainer_state.json"


def model_files(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if path.is_file() and is_model_file(path.name)]


def link_model_files(source: Path, target: Path) -> int:
    """Hard-link (or copy) a model's loadable files into `target`; their total size. Files
    are never modified after they are written, so sharing them is safe."""
    target.mkdir(parents=True, exist_ok=True)
    size = 0
    for path in model_files(source):
        destination = target / path.name
        destination.unlink(missing_ok=True)
        try:
            os.link(path, destination)
        except OSError:
            shutil.copy2(path, destination)
        size += path.stat().st_size
    return size
