"""The sweep in the object store: what no row owns (models whose commit never happened, kept
epochs of jobs that did not succeed, files without a row) goes once older than the grace."""

import time
from pathlib import Path

import pytest

from app.core.config import get_settings
from app.jobs.sweep import sweep_leftovers
from app.storage import get_storage
from app.storage.s3 import ObjectStorage
from tests.conftest import reset_caches
from tests.support.seaweedfs import S3Server


@pytest.fixture
def store_settings(
    configured: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> S3Server:
    for name, value in s3_server.env(s3_server.prefix()).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TUNESERVE_SWEEP_GRACE_SECONDS", "2")
    reset_caches()
    return s3_server


def tree(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def test_leftovers_without_rows_are_swept_from_the_store(
    store_settings: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = get_settings()
    storage = get_storage(settings)
    assert isinstance(storage, ObjectStorage)
    storage.put_tree("models/mdl_orphan/", tree(tmp_path, "a"))  # committed, no row
    storage.put("models/mdl_dead/_pending", b"")  # a writer that died mid-tree
    storage.put("models/mdl_dead/config.json", b"{}")
    storage.put_tree("checkpoints/job_gone/epoch-1-a1/", tree(tmp_path, "b"))
    storage.put("files/file_norow.csv", b"a,b\n")
    time.sleep(3)
    storage.put_tree("models/mdl_fresh/", tree(tmp_path, "c"))  # within the grace: kept
    removed = sweep_leftovers(settings)
    assert removed == {"models": 2, "jobs": 0, "uploads": 1, "checkpoints": 1}
    prefix = settings.storage_url.split("/", 3)[3]
    assert store_settings.keys(prefix) == [
        "models/mdl_fresh/_manifest.json",
        "models/mdl_fresh/config.json",
    ]
    assert sweep_leftovers(settings, store=False)["models"] == 0
