"""The storage contract, run against every backend (an object-store backend joins BACKENDS)."""

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.storage import LocalStorage, ObjectInfo, Storage, StorageKeyError

BACKENDS: dict[str, Callable[[Path], Storage]] = {
    "local": lambda tmp: LocalStorage(tmp / "root"),
}


@pytest.fixture(params=sorted(BACKENDS))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    yield BACKENDS[request.param](tmp_path)


def folder(tmp_path: Path, files: dict[str, bytes]) -> Path:
    source = tmp_path / "source"
    for name, data in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    return source


def test_put_get_open_exists_delete(storage: Storage) -> None:
    assert not storage.exists("files/file_a.csv")
    storage.put("files/file_a.csv", b"a,b\n1,2\n")
    assert storage.exists("files/file_a.csv")
    assert storage.get("files/file_a.csv") == b"a,b\n1,2\n"
    with storage.open("files/file_a.csv") as handle:
        assert handle.read(4) == b"a,b\n"
        assert handle.read() == b"1,2\n"
    storage.put("files/file_a.csv", b"replaced")
    assert storage.get("files/file_a.csv") == b"replaced"
    assert storage.delete("files/file_a.csv") == len(b"replaced")
    assert storage.delete("files/file_a.csv") == 0
    assert not storage.exists("files/file_a.csv")
    with pytest.raises(FileNotFoundError):
        storage.get("files/file_a.csv")
    with pytest.raises(FileNotFoundError), storage.open("files/file_a.csv"):
        pass


def test_put_file_consumes_the_source(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "staged"
    source.write_bytes(b"x" * 10)
    storage.put_file("files/file_b.jsonl", source)
    assert not source.exists()
    assert storage.get("files/file_b.jsonl") == b"x" * 10


def test_list_and_size_under_a_prefix(storage: Storage) -> None:
    storage.put("models/mdl_a/config.json", b"{}")
    storage.put("models/mdl_a/model.safetensors", b"w" * 100)
    storage.put("models/mdl_ab/config.json", b"{}")  # a sibling whose name shares the prefix
    storage.put("checkpoints/job_a/epoch-1-a1/model.safetensors", b"c" * 7)
    assert list(storage.list("models/mdl_a/")) == [
        ObjectInfo("models/mdl_a/config.json", 2),
        ObjectInfo("models/mdl_a/model.safetensors", 100),
    ]
    assert storage.size("models/mdl_a/") == 102
    assert storage.size("models/") == 104
    assert storage.size("checkpoints/job_a/") == 7
    assert list(storage.list("outputs/")) == []
    assert storage.size("outputs/") == 0


def test_delete_prefix_frees_every_object_under_it(storage: Storage) -> None:
    storage.put("checkpoints/job_a/epoch-1-a1/model.safetensors", b"c" * 7)
    storage.put("checkpoints/job_a/epoch-2-a1/model.safetensors", b"c" * 5)
    storage.put("checkpoints/job_b/epoch-1-a1/model.safetensors", b"k")
    assert storage.delete_prefix("checkpoints/job_a/") == 12
    assert storage.delete_prefix("checkpoints/job_a/") == 0
    assert storage.size("checkpoints/") == 1


def test_put_tree_stores_a_folder_whole(storage: Storage, tmp_path: Path) -> None:
    source = folder(
        tmp_path,
        {"config.json": b"{}", "model.safetensors": b"w" * 50, "epoch-1-a1/x.json": b"[]"},
    )
    assert storage.put_tree("models/mdl_t/", source) == 54
    assert not source.exists()
    assert [info.key for info in storage.list("models/mdl_t/")] == [
        "models/mdl_t/config.json",
        "models/mdl_t/epoch-1-a1/x.json",
        "models/mdl_t/model.safetensors",
    ]
    with storage.local_dir("models/mdl_t/") as local:
        assert (local / "model.safetensors").read_bytes() == b"w" * 50
    # A second put_tree replaces the folder as a whole.
    again = folder(tmp_path, {"config.json": b"{1}"})
    storage.put_tree("models/mdl_t/", again)
    assert [info.key for info in storage.list("models/mdl_t/")] == ["models/mdl_t/config.json"]


def test_a_tree_being_put_is_never_seen_in_part(storage: Storage, tmp_path: Path) -> None:
    """Readers polling the final prefix see nothing or everything."""
    names = {f"shard-{i}.safetensors": b"s" * 1000 for i in range(50)}
    source = folder(tmp_path, names)
    seen: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.add(len(list(storage.list("models/mdl_big/"))))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        storage.put_tree("models/mdl_big/", source)
    finally:
        done.set()
        watcher.join()
    seen.add(len(list(storage.list("models/mdl_big/"))))
    assert seen <= {0, 50}
    assert 50 in seen


def test_local_copies_for_libraries_that_read_paths(storage: Storage) -> None:
    storage.put("files/file_c.tsv", b"a\tb\n")
    with storage.local_file("files/file_c.tsv") as path:
        assert path.read_bytes() == b"a\tb\n"
    with pytest.raises(FileNotFoundError), storage.local_file("files/none.tsv"):
        pass
    with pytest.raises(FileNotFoundError), storage.local_dir("models/none/"):
        pass


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "files/../x", "files/..", "..", "files//a", "files/.hidden", "a\\b", "ä"],
)
def test_keys_that_are_not_ours_are_refused(storage: Storage, key: str) -> None:
    with pytest.raises(StorageKeyError):
        storage.put(key, b"x")
    with pytest.raises(StorageKeyError):
        storage.exists(key)


def test_a_prefix_names_a_folder(storage: Storage) -> None:
    with pytest.raises(StorageKeyError):
        storage.size("models/mdl_a")
    with pytest.raises(StorageKeyError):
        storage.delete_prefix("/")
