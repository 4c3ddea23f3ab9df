"""The storage contract, run against every backend: the data directory, and an object store
(a real S3 server, SeaweedFS, with authentication on; see tests/support/seaweedfs.py)."""

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import obstore
import pytest

from app.storage import (
    LocalStorage,
    ObjectInfo,
    Storage,
    StorageConfigError,
    StorageIntegrityError,
    StorageKeyError,
)
from app.storage.cache import LocalCache
from app.storage.s3 import MANIFEST, ObjectStorage, s3_store
from tests.support.seaweedfs import S3Server


def object_storage(
    server: S3Server,
    tmp: Path,
    prefix: str | None = None,
    secret: str | None = None,
    endpoint: str | None = None,
    retry_seconds: float = 20.0,
) -> ObjectStorage:
    url = server.url(prefix or server.prefix())
    store = s3_store(
        url,
        endpoint=endpoint or server.endpoint,
        region=None,
        access_key_id=server.access_key,
        secret_access_key=secret or server.secret_key,
        retry_seconds=retry_seconds,
    )
    return ObjectStorage(store, LocalCache(tmp / "cache", 64 * 1024**2), url, retry_seconds)


def _local(request: pytest.FixtureRequest, tmp: Path) -> Storage:
    return LocalStorage(tmp / "root")


def _object(request: pytest.FixtureRequest, tmp: Path) -> Storage:
    return object_storage(request.getfixturevalue("s3_server"), tmp)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Storage]] = {
    "local": _local,
    "s3": _object,
}


@pytest.fixture(params=sorted(BACKENDS))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    yield BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def s3(s3_server: S3Server, tmp_path: Path) -> ObjectStorage:
    return object_storage(s3_server, tmp_path)


def stored_keys(storage: Storage, s3_server: S3Server | None = None) -> list[str]:
    """Every object the backend holds, hidden ones included (temp files, markers)."""
    if isinstance(storage, LocalStorage):
        if not storage.root.exists():
            return []
        return sorted(
            p.relative_to(storage.root).as_posix() for p in storage.root.rglob("*") if p.is_file()
        )
    assert isinstance(storage, ObjectStorage)
    return sorted(m["path"] for chunk in obstore.list(storage.store) for m in chunk)


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
        assert sorted(p.name for p in local.iterdir()) == [
            "config.json",
            "epoch-1-a1",
            "model.safetensors",
        ]
    # A tree is written once: a second put_tree is refused and the first stays whole.
    again = folder(tmp_path, {"config.json": b"{1}"})
    with pytest.raises(FileExistsError):
        storage.put_tree("models/mdl_t/", again)
    assert storage.size("models/mdl_t/") == 54
    assert storage.get("models/mdl_t/config.json") == b"{}"
    # A file put into a stored tree afterwards (a rewritten card) is part of it.
    storage.put("models/mdl_t/README.md", b"# card")
    assert storage.size("models/mdl_t/") == 60
    with storage.local_dir("models/mdl_t/") as local:
        assert (local / "README.md").read_bytes() == b"# card"
    storage.put("models/mdl_t/config.json", b"{2}")  # a committed file rewritten: no sha to match
    with storage.local_dir("models/mdl_t/") as local:
        assert (local / "config.json").read_bytes() == b"{2}"


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


def test_a_tree_whose_commit_never_happened_is_invisible(
    storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that dies between its files and its commit point leaves nothing visible."""
    source = folder(tmp_path, {"config.json": b"{}", "model.safetensors": b"w" * 500})

    def crash(*_args: object) -> None:
        raise OSError("the writer died here")

    if isinstance(storage, ObjectStorage):
        monkeypatch.setattr(storage, "_commit", crash)  # every file stored, no manifest
    else:
        monkeypatch.setattr("app.storage.local.os.rename", crash)
    with pytest.raises(OSError, match="died"):
        storage.put_tree("models/mdl_c/", source)
    monkeypatch.undo()
    if isinstance(storage, ObjectStorage):  # (the local backend cleans its staging folder up)
        assert any("mdl_c" in key for key in stored_keys(storage))  # the bytes are there...
    assert list(storage.list("models/mdl_c/")) == []  # ...and nobody sees them
    assert list(storage.list("models/")) == []
    assert storage.size("models/") == 0
    with pytest.raises(FileNotFoundError), storage.local_dir("models/mdl_c/"):
        pass


def test_delete_prefix_removes_every_object_of_trees(storage: Storage, tmp_path: Path) -> None:
    for n in (1, 2):
        source = folder(tmp_path, {"model.safetensors": b"w" * 100 * n, "config.json": b"{}"})
        storage.put_tree(f"checkpoints/job_d/epoch-{n}-a1/", source)
    storage.put("checkpoints/job_e/x.json", b"[]")
    assert storage.size("checkpoints/job_d/") == 304
    before = stored_keys(storage)
    assert len([k for k in before if "job_d" in k]) >= 4
    assert storage.delete_prefix("checkpoints/job_d/") == 304
    assert [k for k in stored_keys(storage) if "job_d" in k] == []
    assert [k for k in stored_keys(storage) if "job_e" in k] == ["checkpoints/job_e/x.json"]
    assert storage.delete_prefix("checkpoints/job_d/") == 0


def test_a_multi_mib_object_streams_in_chunks(storage: Storage, tmp_path: Path) -> None:
    data = os.urandom(1024 * 1024) * 12 + b"tail"  # over one multipart part
    source = tmp_path / "big"
    source.write_bytes(data)
    storage.put_file("files/file_big.csv", source)
    digest, reads = hashlib.sha256(), 0
    with storage.open("files/file_big.csv") as handle:
        assert handle.read(4) == data[:4]
        digest.update(data[:4])
        while chunk := handle.read(256 * 1024):
            assert len(chunk) <= 256 * 1024
            digest.update(chunk)
            reads += 1
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert reads >= 48
    with storage.local_file("files/file_big.csv") as path:
        assert path.name == "file_big.csv" and path.stat().st_size == len(data)


def test_check_passes_on_a_usable_store(storage: Storage) -> None:
    storage.check()


# --- the object store only --------------------------------------------------------------


def test_the_manifest_is_written_last_create_only_and_hidden(
    s3: ObjectStorage, s3_server: S3Server, tmp_path: Path
) -> None:
    source = folder(tmp_path, {"config.json": b"{}", "model.safetensors": b"w" * 50})
    s3.put_tree("models/mdl_m/", source)
    manifest = json.loads(s3.get("models/mdl_m/" + MANIFEST))
    assert [(f["name"], f["size"]) for f in manifest["files"]] == [
        ("config.json", 2),
        ("model.safetensors", 50),
    ]
    assert manifest["files"][1]["sha256"] == hashlib.sha256(b"w" * 50).hexdigest()
    assert all(not info.key.endswith(MANIFEST) for info in s3.list("models/"))
    keys = stored_keys(s3)
    assert keys == [
        "models/mdl_m/_manifest.json",
        "models/mdl_m/config.json",
        "models/mdl_m/model.safetensors",
    ]
    # The server refuses a second manifest (If-None-Match: *); our own one again is a commit
    # retried after a lost answer.
    with pytest.raises(FileExistsError):
        s3._commit("models/mdl_m/" + MANIFEST, b'{"version": 1, "files": []}')
    s3._commit("models/mdl_m/" + MANIFEST, s3.get("models/mdl_m/" + MANIFEST))


def test_local_dir_verifies_the_manifest_sha256(s3: ObjectStorage, tmp_path: Path) -> None:
    source = folder(tmp_path, {"config.json": b"{}", "model.safetensors": b"w" * 50})
    s3.put_tree("models/mdl_v/", source)
    key = "models/mdl_v/" + MANIFEST
    manifest = json.loads(s3.get(key))
    manifest["files"][1]["sha256"] = hashlib.sha256(b"other").hexdigest()
    obstore.delete(s3.store, key)
    obstore.put(s3.store, key, json.dumps(manifest).encode())
    with (
        pytest.raises(StorageIntegrityError, match="model.safetensors"),
        s3.local_dir("models/mdl_v/"),
    ):
        pass
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")] == []


def test_wrong_credentials_fail_check_with_one_clear_line(
    s3_server: S3Server, tmp_path: Path
) -> None:
    wrong = object_storage(s3_server, tmp_path, secret="not-the-secret")
    with pytest.raises(StorageConfigError) as refused:
        wrong.check()
    message = str(refused.value)
    assert message.startswith("the object store refused these credentials: ")
    assert "\n" not in message and len(message) < 200
    with pytest.raises(StorageConfigError):
        wrong.put("files/x.csv", b"x")


def test_a_store_paused_for_seconds_is_survived(own_s3_server: S3Server, tmp_path: Path) -> None:
    s3 = object_storage(own_s3_server, tmp_path)
    writer = threading.Thread(target=s3.put, args=("files/file_p.csv", b"p" * 1000))
    with own_s3_server.paused():  # for 3 s
        started = time.monotonic()
        writer.start()
        writer.join(timeout=3)
        assert writer.is_alive()  # waiting on the stopped server
    writer.join(timeout=30)
    assert not writer.is_alive()
    assert time.monotonic() - started >= 3
    assert s3.get("files/file_p.csv") == b"p" * 1000


def test_a_store_that_comes_up_later_is_survived_by_retries(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """Connections refused for 4 s (nothing listens yet), then a proxy to the server opens."""
    port = _free_port()
    late = object_storage(s3_server, tmp_path, endpoint=f"http://127.0.0.1:{port}")
    target = s3_server.endpoint.rsplit(":", 1)[1]
    proxy = threading.Timer(4.0, _forward, args=(port, int(target)))
    proxy.daemon = True
    started = time.monotonic()
    proxy.start()
    late.put("files/file_l.csv", b"late")
    assert time.monotonic() - started >= 4
    assert late.get("files/file_l.csv") == b"late"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _forward(port: int, target: int) -> None:
    """A TCP proxy from `port` to `target` for the rest of the session (daemon threads)."""
    listener = socket.create_server(("127.0.0.1", port))

    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for end in (a, b):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        while True:
            client, _ = listener.accept()
            upstream = socket.create_connection(("127.0.0.1", target))
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()


def test_a_rewritten_card_fetches_only_the_card_again(s3: ObjectStorage, tmp_path: Path) -> None:
    source = folder(tmp_path, {"config.json": b"{}", "model.safetensors": b"w" * 5000})
    s3.put_tree("models/mdl_r/", source)
    with s3.local_dir("models/mdl_r/") as first:
        weights = (first / "model.safetensors").stat().st_ino
    s3.put("models/mdl_r/README.md", b"# evaluated")
    with s3.local_dir("models/mdl_r/") as second:
        assert second != first
        assert (second / "README.md").read_bytes() == b"# evaluated"
        assert (second / "model.safetensors").stat().st_ino == weights  # linked, not fetched
