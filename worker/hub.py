"""Fetching a tenant's Hub dataset or base model: the repository's own files only, size-checked.

`datasets.load_dataset(name)` follows the dataset card's `configs[].data_files`, and would read
absolute paths on the worker (other tenants' uploads) and fetch any URL (SSRF). Here the card is
read first and refused when a data file is not a plain path inside the repository; then only
the selected config's data files (uncompressed CSV, TSV, JSON, JSON Lines, Parquet) are
fetched into the job's folder, within the byte limit, and loaded from there. A base model is
fetched the same way: its config, tokenizer and safetensors files, nothing else.

Online, `snapshot_download(dry_run=True)` lists the files and their sizes before anything is
downloaded. Offline (HF_HUB_OFFLINE=1, or the Hub unreachable) the worker's Hugging Face cache
is used, as `from_pretrained` would; a repository the Hub refuses (missing, gated, private)
is never read from the cache.
"""

import glob
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from app.core.config import Settings
from app.core.redact import public_message
from worker.errors import JobFailure

CARD = "README.md"
DATA_EXTENSIONS = (".parquet", ".csv", ".tsv", ".json", ".jsonl")
MODEL_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "model.safetensors.index.json",
    "*.safetensors",
)
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class HubRepo:
    repo_id: str
    repo_type: str  # "dataset" or "model"

    @property
    def kind(self) -> str:
        return "Hub dataset" if self.repo_type == "dataset" else "Hub model"


class HubUnavailable(Exception):
    """The repository cannot be read: missing, gated, private, or not cached while offline."""


def hub_token(settings: Settings) -> bool | None:
    """False (send no token) unless the operator lets tenants' names use the server's token."""
    return None if settings.hub_use_server_token else False


# --- the dataset card -------------------------------------------------------------------


def unsafe_data_file(pattern: str) -> bool:
    """True for a card data file that is not a relative path inside the repository."""
    text = pattern.strip()
    if not text or "://" in text or "::" in text or "\\" in text:
        return True
    if text.startswith(("/", "~")) or _DRIVE.match(text):
        return True
    return ".." in PurePosixPath(text).parts


def _strings(value: Any) -> Iterable[str]:
    """Every path string of a card's `data_files`: a string, a list, or split/path mappings."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        if "path" in value:
            yield from _strings(value["path"])
        else:
            for key, item in value.items():
                if key != "split":
                    yield from _strings(item)
    elif value is not None:
        yield str(value)


def card_configs(card: dict[str, Any] | None, name: str) -> list[dict[str, Any]]:
    """The card's `configs`, refused (`invalid_dataset`) if any data file leaves the repository."""
    configs = (card or {}).get("configs") or []
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise JobFailure("invalid_dataset", f"The dataset card of '{name}' has malformed configs.")
    for config in configs:
        paths = list(_strings(config.get("data_files")))
        if config.get("data_dir") is not None:
            paths.append(str(config["data_dir"]))
        bad = [p for p in paths if unsafe_data_file(p)]
        if bad:
            raise JobFailure(
                "invalid_dataset",
                f"The dataset card of '{name}' (config {config.get('config_name', 'default')!r}) "
                f"names data files outside the repository ({bad[0][:100]!r}); only relative paths "
                "inside the dataset repository are loaded.",
            )
    return configs


def config_patterns(configs: list[dict[str, Any]], config: str | None, name: str) -> list[str]:
    """The file patterns (relative to the repository) that the selected config loads."""
    every = [f"*{ext}" for ext in DATA_EXTENSIONS]
    if not configs:
        return every  # `datasets` infers the splits from the file names
    chosen = _choose(configs, config, name)
    data_dir = str(chosen.get("data_dir") or "").strip("/")
    patterns = list(_strings(chosen.get("data_files"))) or every
    if data_dir:
        patterns = [f"{data_dir}/{p}" for p in patterns]
    return patterns


def _choose(configs: list[dict[str, Any]], config: str | None, name: str) -> dict[str, Any]:
    names = [str(c.get("config_name", "default")) for c in configs]
    if config is not None:
        if config in names:
            return configs[names.index(config)]
        raise JobFailure(
            "dataset_unavailable",
            f"The Hub dataset '{name}' has no config {config!r}; its configs are {names[:20]}.",
        )
    defaults = [c for c in configs if c.get("default")] or [
        c for c in configs if c.get("config_name", "default") == "default"
    ]
    if defaults:
        return defaults[0]
    if len(configs) == 1:
        return configs[0]
    raise JobFailure(
        "dataset_unavailable",
        f"The Hub dataset '{name}' has several configs; name one in dataset.config: {names[:20]}.",
    )


# --- fetching -----------------------------------------------------------------------------


def _list_files(
    repo: HubRepo, patterns: list[str], token: bool | None
) -> tuple[dict[str, int], str | None, Path | None]:
    """Matching files and their sizes, with the commit (online) or the cached snapshot (offline)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import DryRunError
    from huggingface_hub.utils import filter_repo_objects

    try:
        infos = snapshot_download(
            repo.repo_id,
            repo_type=repo.repo_type,
            allow_patterns=patterns,
            token=token,
            dry_run=True,
        )
    except DryRunError as exc:
        _raise_if_refused(repo, exc.__cause__)
        try:
            folder = Path(
                snapshot_download(
                    repo.repo_id,
                    repo_type=repo.repo_type,
                    allow_patterns=patterns,
                    token=token,
                    local_files_only=True,
                )
            )
        except Exception as cached_exc:  # not in the cache either
            raise HubUnavailable(
                f"The {repo.kind} '{repo.repo_id}' could not be reached, and it is not in this "
                f"worker's Hugging Face cache ({public_message(cached_exc)})."
            ) from cached_exc
        names = [
            p.relative_to(folder).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and not p.relative_to(folder).parts[0].startswith(".")
        ]
        files = {
            n: (folder / n).stat().st_size
            for n in filter_repo_objects(names, allow_patterns=patterns)
        }
        return files, None, folder
    except Exception as exc:
        _raise_if_refused(repo, exc)
        raise HubUnavailable(
            f"Cannot list the {repo.kind} '{repo.repo_id}': {public_message(exc)}"
        ) from exc
    files = {info.filename: int(info.file_size or 0) for info in infos}
    commit = infos[0].commit_hash if infos else None
    return files, commit, None


def _raise_if_refused(repo: HubRepo, cause: BaseException | None) -> None:
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    if isinstance(cause, GatedRepoError):
        reason = "is gated"
    elif isinstance(cause, RepositoryNotFoundError):
        reason = "does not exist or is private"
    elif isinstance(cause, HfHubHTTPError) and cause.response.status_code in (401, 403):
        reason = "needs a token"
    else:
        return
    raise HubUnavailable(
        f"The {repo.kind} '{repo.repo_id}' {reason}; this service fetches public repositories "
        "only (an operator can allow its own Hub token with TUNESERVE_HUB_USE_SERVER_TOKEN)."
    ) from cause


def fetch(
    repo: HubRepo,
    patterns: list[str],
    keep: Any,
    dest: Path,
    max_bytes: int,
    too_large_code: str,
    token: bool | None,
) -> tuple[Path, list[str]]:
    """The repository's files that match `patterns` and `keep(name)`, in `dest`; sizes checked.

    Returns the folder and the relative names of the files in it.
    """
    from huggingface_hub import snapshot_download

    listed, commit, cached = _list_files(repo, patterns, token)
    names = sorted(n for n in listed if keep(n) and not unsafe_data_file(n))
    total = sum(listed[n] for n in names)
    _check_size(repo, total, max_bytes, too_large_code)
    dest.mkdir(parents=True, exist_ok=True)
    if cached is not None:
        for name in names:  # links into the cache, which is read-only to jobs
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink((cached / name).resolve(), target)
    elif names:
        try:
            snapshot_download(
                repo.repo_id,
                repo_type=repo.repo_type,
                revision=commit,
                allow_patterns=[glob.escape(n) for n in names],
                local_dir=dest,
                token=token,
            )
        except Exception as exc:
            _raise_if_refused(repo, exc)
            raise HubUnavailable(
                f"Cannot download the {repo.kind} '{repo.repo_id}': {public_message(exc)}"
            ) from exc
    # The sizes the Hub announced are checked above; these are the bytes that arrived.
    _check_size(repo, sum((dest / n).stat().st_size for n in names), max_bytes, too_large_code)
    return dest, names


def human_bytes(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count} bytes"


def _check_size(repo: HubRepo, total: int, max_bytes: int, code: str) -> None:
    if total > max_bytes:
        raise JobFailure(
            code,
            f"The {repo.kind} '{repo.repo_id}' has {human_bytes(total)} of files to load; this "
            f"service allows at most {human_bytes(max_bytes)}.",
        )


def fetch_base_model(settings: Settings, name: str, dest: Path) -> Path:
    """A Hub model's config, tokenizer and top-level safetensors files, in `dest`."""
    repo = HubRepo(name, "model")
    folder, names = fetch(
        repo,
        list(MODEL_FILES),
        lambda n: "/" not in n,
        dest,
        settings.max_base_model_bytes,
        "base_model_too_large",
        hub_token(settings),
    )
    if "config.json" not in names or not any(n.endswith(".safetensors") for n in names):
        raise HubUnavailable(
            f"The Hub model '{name}' has no config.json or no safetensors weights; only "
            "safetensors weights are loaded."
        )
    return folder


def dataset_bytes_limit(settings: Settings) -> int:
    """A Hub dataset may bring as many bytes as a train and a validation upload."""
    return 2 * settings.max_upload_bytes


def fetch_dataset(settings: Settings, name: str, config: str | None, dest: Path) -> Path:
    """A Hub dataset's card and the selected config's data files, in `dest`; card checked."""
    from huggingface_hub.repocard import metadata_load

    repo = HubRepo(name, "dataset")
    token = hub_token(settings)
    card_limit = settings.max_request_bytes
    folder, names = fetch(
        repo, [CARD], lambda n: n == CARD, dest, card_limit, "invalid_dataset", token
    )
    card: dict[str, Any] | None = None
    if CARD in names:
        try:
            card = metadata_load(folder / CARD)
        except Exception as exc:  # YAML errors of many kinds
            raise JobFailure(
                "invalid_dataset",
                f"The dataset card of '{name}' cannot be read: {public_message(exc)}",
            ) from exc
    patterns = config_patterns(card_configs(card, name), config, name)
    fetch(
        repo,
        patterns,
        lambda n: n.lower().endswith(DATA_EXTENSIONS),
        dest,
        dataset_bytes_limit(settings),
        "dataset_too_large",
        token,
    )
    return folder


def decompressed_bytes(folder: Path, limit: int) -> int:
    """What the folder's data files take once decoded, counted up to just past `limit`.

    Parquet is decoded batch by batch (its metadata's sizes are after dictionary encoding, so a
    column of one repeated long text looks small); other files count as stored.
    """
    import pyarrow.parquet as pq

    total = 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.relative_to(folder).parts[0].startswith("."):
            continue
        if path.suffix.lower() != ".parquet":
            total += path.stat().st_size
            continue
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
                total += batch.nbytes
                if total > limit:
                    return total
        except Exception as exc:  # not a Parquet file after all
            raise JobFailure(
                "invalid_dataset",
                f"The data file '{path.relative_to(folder)}' is not valid Parquet: "
                f"{public_message(exc)}",
            ) from exc
        if total > limit:
            return total
    return total
