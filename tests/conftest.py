"""Shared fixtures: settings in a temp data dir, real PostgreSQL and Redis, a tiny model."""

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.postgres import fresh_database

if TYPE_CHECKING:
    from tests.support.seaweedfs import S3Server
from tests.support.tiny_model import build_tiny_model

REDIS_URL = os.environ.get("TUNESERVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip locally when a server is down; in CI a missing server is a failure."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def reset_caches() -> None:
    """Drop every process-wide cache built from settings, after the environment changed."""
    import app.queue
    from app.auth.cache import get_principal_cache
    from app.core.config import get_settings
    from app.core.db import get_engine, get_sessionmaker

    if get_engine.cache_info().currsize:
        get_engine().dispose()
    for cached in (
        get_settings,
        get_engine,
        get_sessionmaker,
        get_principal_cache,
    ):
        cached.cache_clear()
    app.queue._celery = None


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator["S3Server"]:
    """A real S3 server for the session (started on first use): the one the environment names
    (TUNESERVE_TEST_S3_ENDPOINT, as .ci/run starts), else a SeaweedFS of our own."""
    from tests.support import seaweedfs

    server = seaweedfs.from_env()
    if server is not None:
        try:
            seaweedfs.wait_ready(server, timeout=10)
        except RuntimeError:
            server = None  # not up after all: start our own
    if server is None:
        try:
            server = seaweedfs.start(tmp_path_factory.mktemp("seaweedfs"))
        except (OSError, RuntimeError) as exc:
            if os.environ.get("CI"):
                pytest.fail(f"could not start SeaweedFS: {exc}")
            pytest.skip(f"could not start SeaweedFS: {exc}")
    yield server
    server.stop()


@pytest.fixture
def own_s3_server(tmp_path: Path) -> Iterator["S3Server"]:
    """A SeaweedFS of this test's own (it starts in about a second), for a test that stops
    the server: the session's is shared with tests that may run beside it."""
    from tests.support import seaweedfs

    server = seaweedfs.start(tmp_path / "own-seaweedfs")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("base-models") / "tiny")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    with fresh_database("tuneserve_test_") as url:
        yield url


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tuneserve.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, tiny_model_dir: Path
) -> Iterator[Path]:
    """Settings for this test: a temp data dir, the given database, a migrated schema."""
    from app.core.config import get_settings
    from app.core.migrate import upgrade_to_head

    data_dir = tmp_path / "data"
    monkeypatch.setenv("TUNESERVE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("TUNESERVE_DATABASE_URL", database_url)
    monkeypatch.setenv("TUNESERVE_BROKER_URL", f"sqla+sqlite:///{tmp_path / 'broker.db'}")
    monkeypatch.setenv("TUNESERVE_BASE_MODELS_DIR", str(tiny_model_dir.parent))
    monkeypatch.setenv("TUNESERVE_QUEUE_NAME", f"test-{uuid.uuid4().hex[:8]}")
    reset_caches()
    get_settings().ensure_dirs()
    upgrade_to_head(database_url)
    yield data_dir
    reset_caches()
