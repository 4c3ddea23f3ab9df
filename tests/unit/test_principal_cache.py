"""The API-key cache: a key is trusted for `seconds` after its lookup, then looked up again."""

from app.auth.cache import PrincipalCache
from app.auth.service import Principal

ALICE = Principal(tenant_id="ten_a", key_id="key_a")
BOB = Principal(tenant_id="ten_b", key_id="key_b")


def test_entry_expires_after_its_window() -> None:
    now = [100.0]
    cache = PrincipalCache(2.0, clock=lambda: now[0])
    assert cache.get("h1") is None
    cache.put("h1", ALICE)
    now[0] += 1.99
    assert cache.get("h1") == ALICE
    now[0] += 0.01
    assert cache.get("h1") is None
    assert cache.get("h1") is None  # gone, not revived


def test_zero_seconds_keeps_nothing() -> None:
    cache = PrincipalCache(0.0)
    cache.put("h1", ALICE)
    assert cache.get("h1") is None


def test_oldest_key_goes_when_full() -> None:
    cache = PrincipalCache(60.0, size=2)
    cache.put("h1", ALICE)
    cache.put("h2", BOB)
    cache.put("h1", ALICE)  # seen again: now the newest
    cache.put("h3", BOB)
    assert cache.get("h2") is None
    assert cache.get("h1") == ALICE and cache.get("h3") == BOB
