"""A local Hugging Face cache with hand-made repositories, for tests with HF_HUB_OFFLINE=1.

`snapshot_download` works offline from `<cache>/{models,datasets}--org--name/snapshots/<rev>/`
with `refs/main` naming the revision.
"""

import hashlib
import shutil
from pathlib import Path


def add_hub_repo(cache: Path, repo_type: str, repo_id: str, files: dict[str, bytes | str]) -> Path:
    """The repository's snapshot folder, with `files` (relative name -> content) in it."""
    folder = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    revision = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = folder / "snapshots" / revision
    shutil.rmtree(folder, ignore_errors=True)
    for name, content in files.items():
        path = snapshot / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(revision)
    return snapshot


def add_model_folder(cache: Path, repo_id: str, model_dir: Path, extra: dict[str, bytes]) -> Path:
    """A model repository holding a saved model folder's files, and `extra` files."""
    files: dict[str, bytes | str] = {
        p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()
    }
    return add_hub_repo(cache, "model", repo_id, {**files, **extra})


def dataset_card(configs_yaml: str) -> str:
    """A README.md whose YAML header is `configs_yaml`."""
    return f"---\n{configs_yaml.strip()}\n---\n# A dataset\n"
