"""Where a base model or a trained model is loaded from.

A `base_model` is, in this order: the id of a model this service trained, the name of a folder
under the base-models directory, or a Hugging Face Hub id (fetched by the worker into the job's
folder, or read from the local cache when the Hub is offline; never handed to from_pretrained
as a name). A name never reaches the filesystem outside the base-models and data directories:
folder names are one path component and a folder that resolves elsewhere (a symlink out) is
refused. Names are judged by their syntax, never by whether a path of that name exists on the
server, so the answer tells a tenant nothing about the server's files.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from app.core.config import Settings

TRAINED_MODEL_ID = re.compile(r"^mdl_[0-9a-f]{24}$")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w\-.]{0,95}(/[A-Za-z0-9][\w\-.]{0,95})?$")
FOLDER_NAME = re.compile(r"^[A-Za-z0-9][\w\-.]{0,199}$")


@dataclass(frozen=True)
class BaseModelRef:
    kind: str  # "trained", "local" or "hub"
    name: str
    location: str  # folder path or Hub id, as given to from_pretrained


class InvalidModelName(ValueError):
    """The name is neither a trained model id, a local folder, nor a valid Hub id."""


def trained_model_dir(settings: Settings, model_id: str) -> Path:
    return settings.models_dir / model_id


def checkpoints_dir(settings: Settings, job_id: str) -> Path:
    """The kept epoch weights of a job that has succeeded."""
    return settings.resolved_data_dir / "checkpoints" / job_id


def locate_base_model(settings: Settings, name: str) -> BaseModelRef:
    if TRAINED_MODEL_ID.match(name):
        return BaseModelRef("trained", name, str(trained_model_dir(settings, name)))
    if FOLDER_NAME.match(name) and ".." not in name:
        root = settings.resolved_base_models_dir
        folder = root / name
        if folder.is_dir():
            if not folder.resolve().is_relative_to(root):
                raise InvalidModelName(
                    f"The base model folder '{name}' resolves outside the base-models directory; "
                    "copy the model into it instead of linking it."
                )
            return BaseModelRef("local", name, str(folder))
    if HUB_ID.match(name) and ".." not in name:
        return BaseModelRef("hub", name, name)
    raise InvalidModelName(
        f"'{name}' is not a trained model id, a folder under the base-models directory, "
        "or a Hugging Face Hub id like 'org/name'."
    )
