import threading
import time
from pathlib import Path

import pytest

from app.core.config import Settings
from app.jobs.repository import decode_cursor, encode_cursor
from app.models.locator import InvalidModelName, locate_base_model
from app.predict.cache import ModelCache
from app.tables import Job, utcnow


def test_cache_is_bounded_and_least_recently_used_goes_first() -> None:
    loads: list[str] = []
    cache: ModelCache[str] = ModelCache(2, lambda key: loads.append(key) or key.upper())
    assert cache.get("a") == "A"
    cache.get("b")
    cache.get("a")
    cache.get("c")  # evicts b, the least recently used
    assert "a" in cache and "c" in cache and "b" not in cache
    assert loads == ["a", "b", "c"]


def test_cache_loads_each_key_once_under_concurrency() -> None:
    loads: list[str] = []

    def slow(key: str) -> str:
        loads.append(key)
        time.sleep(0.1)
        return key

    cache: ModelCache[str] = ModelCache(4, slow)
    threads = [threading.Thread(target=cache.get, args=("m",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == ["m"]


def test_locator_order(tmp_path: Path) -> None:
    (tmp_path / "bases" / "mini").mkdir(parents=True)
    settings = Settings(data_dir=tmp_path / "data", base_models_dir=tmp_path / "bases")
    assert locate_base_model(settings, "mini").kind == "local"
    assert locate_base_model(settings, "org/name").kind == "hub"
    trained = locate_base_model(settings, "mdl_" + "a" * 24)
    assert trained.kind == "trained" and trained.location.endswith("mdl_" + "a" * 24)
    for bad in ("../etc", "/etc/passwd", "a/b/c", "org/..", ""):
        with pytest.raises(InvalidModelName):
            locate_base_model(settings, bad)


def test_cursor_round_trip() -> None:
    job = Job(id="job_1", created_at=utcnow())
    created, job_id = decode_cursor(encode_cursor(job))
    assert (created, job_id) == (job.created_at, "job_1")
    with pytest.raises(ValueError):
        decode_cursor("bm9wZQ")
