"""The local cache of downloaded objects: filled once per version, bounded in bytes, least
recently used out first, never an entry in use."""

from collections.abc import Callable
from pathlib import Path

from app.storage.cache import LocalCache


def filler(size: int, calls: list[str], name: str) -> Callable[[Path], None]:
    def fill(folder: Path) -> None:
        calls.append(name)
        (folder / "weights").write_bytes(b"w" * size)

    return fill


def entries(cache: LocalCache) -> int:
    return len([p for p in cache.root.iterdir() if not p.name.startswith(".")])


def test_filled_once_per_version(tmp_path: Path) -> None:
    cache, calls = LocalCache(tmp_path, 10_000), list[str]()
    for _ in range(2):
        with cache.entry("models/a/", "v1", filler(10, calls, "a1")) as folder:
            assert (folder / "weights").read_bytes() == b"w" * 10
    with cache.entry("models/a/", "v2", filler(20, calls, "a2")) as folder:
        assert (folder / "weights").stat().st_size == 20
    assert calls == ["a1", "a2"]


def test_bounded_least_recently_used_out_first(tmp_path: Path) -> None:
    cache, calls = LocalCache(tmp_path, 250), list[str]()
    for name in "abc":
        with cache.entry(name, "v", filler(100, calls, name)):
            pass
    # a, b, c: 300 bytes > 250, so the oldest (a) went.
    assert entries(cache) == 2
    with cache.entry("b", "v", filler(100, calls, "b")):
        pass
    assert calls == ["a", "b", "c"]  # b was still there
    with cache.entry("a", "v", filler(100, calls, "a")):
        pass
    assert calls == ["a", "b", "c", "a"]


def test_an_entry_in_use_is_never_evicted(tmp_path: Path) -> None:
    cache, calls = LocalCache(tmp_path, 150), list[str]()
    with cache.entry("held", "v", filler(100, calls, "held")) as held:
        for name in "xyz":
            with cache.entry(name, "v", filler(100, calls, name)):
                pass
        assert (held / "weights").exists()
    with cache.entry("held", "v", filler(100, calls, "held")):
        pass
    assert calls.count("held") == 1
