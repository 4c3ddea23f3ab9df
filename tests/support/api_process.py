"""The real API process alone (no worker), on a given database, for tests of its answers."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.service import Service


@contextmanager
def api_process(
    tmp_path: Path, database_url: str, tiny_model_dir: Path, **env: str
) -> Iterator[Service]:
    """`tuneserve api` on `database_url` with a key of the tenant `tests` (service.api_key)."""
    base = {
        "TUNESERVE_DATA_DIR": str(tmp_path / "data"),
        "TUNESERVE_DATABASE_URL": database_url,
        "TUNESERVE_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        "TUNESERVE_BASE_MODELS_DIR": str(tiny_model_dir.parent),
        "TUNESERVE_QUEUE_NAME": f"api-{tmp_path.name}-{uuid.uuid4().hex[:8]}",
        "HF_HUB_OFFLINE": "1",
    }
    service = Service({**base, **env}, tmp_path, embedded=False)
    service.api_key = service.issue_key()
    service.start_process("api", "api", "--port", str(service.port))
    try:
        service.wait_healthy()
        yield service
    finally:
        service.stop()
