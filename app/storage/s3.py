"""The object-store backend (S3 and S3-compatible servers), on obstore.

An object store has no rename, so a tree's commit point is its manifest: `put_tree` writes a
`_pending` marker, every file, then `<prefix>_manifest.json` (names, sizes, sha256, ETags)
last and create-only (`If-None-Match: *`), then removes the marker. Listings hide the files
of a tree that has a marker but no manifest (a writer at work, or one that died: the sweep's),
and hide the manifest and marker themselves. A file `put` into a stored tree later (a model's
rewritten card) is listed as usual; the manifest still describes the tree as committed, and
a file whose ETag is no longer the committed one is not checked against its sha256.
"""

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    GenericError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import S3Store

from app.storage.base import (
    ObjectInfo,
    StorageConfigError,
    StorageError,
    StorageIntegrityError,
    check_key,
    check_prefix,
)
from app.storage.cache import LocalCache

logger = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
PENDING = "_pending"
# A cached copy of a tree is `<entry>/tree/`, with the ETag of each file in `<entry>/etags.json`.
_TREE, _ETAGS = "tree", "etags.json"
_MARKERS = (MANIFEST, PENDING)
_CHUNK = 1024 * 1024
_PART = 8 * 1024 * 1024  # multipart part size of put_file and put_tree
_T = TypeVar("_T")
_S3_CODE = re.compile(r"<Code>(\w+)</Code>")
_REFUSED_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
}


@dataclass(frozen=True)
class _Object:
    key: str
    size: int
    etag: str


_Objects = list[_Object]  # `list` is a method name in the class below
_Names = list[str]


class ObjectStorage:
    """Keys under `s3://<bucket>/<prefix>/`; see the module docstring for trees."""

    def __init__(
        self, store: S3Store, cache: LocalCache, url: str, retry_seconds: float = 60.0
    ) -> None:
        self.store = store
        self.cache = cache
        self.url = url
        self.retry_seconds = retry_seconds

    # --- requests ---------------------------------------------------------------------
    def _call(self, what: str, request: Callable[[], _T]) -> _T:
        """`request()`, with obstore's errors as the builtin ones callers expect. obstore
        retries refused connections, 5xx and read timeouts itself; a write that timed out is
        retried here (every write of ours is idempotent) until retry_seconds have passed."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.2
        while True:
            try:
                return request()
            except (NotFoundError, FileNotFoundError) as exc:
                raise FileNotFoundError(what) from exc
            except AlreadyExistsError as exc:
                raise FileExistsError(what) from exc
            except (PermissionDeniedError, UnauthenticatedError) as exc:
                raise StorageConfigError(_refused(exc)) from exc
            except GenericError as exc:
                text = str(exc)
                if _is_refusal(text):
                    raise StorageConfigError(_refused(exc)) from exc
                timed_out = "timed out" in text.lower() or "timeout" in text.lower()
                if not timed_out or time.monotonic() + delay > deadline:
                    raise StorageError(
                        f"object store error on {what}: {_first_line(text)}"
                    ) from exc
                logger.warning("object store timed out on %s; retrying", what)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _list(self, prefix: str) -> _Objects:
        """Every object under `prefix`, markers and hidden trees included, sorted by key."""
        found: _Objects = []

        def collect() -> None:
            found.clear()
            for chunk in obstore.list(self.store, prefix, chunk_size=1000):
                found.extend(_Object(m["path"], m["size"], m["e_tag"] or "") for m in chunk)

        self._call(prefix, collect)
        return sorted(found, key=lambda obj: obj.key)

    def _visible(self, objects: _Objects) -> _Objects:
        """Without markers, and without the files of trees not (yet) committed."""
        committed = {o.key[: -len(MANIFEST)] for o in objects if _base(o.key) == MANIFEST}
        hidden = [
            o.key[: -len(PENDING)]
            for o in objects
            if _base(o.key) == PENDING and o.key[: -len(PENDING)] not in committed
        ]
        return [
            o
            for o in objects
            if _base(o.key) not in _MARKERS and not any(o.key.startswith(h) for h in hidden)
        ]

    def _manifest(self, prefix: str) -> dict[str, Any]:
        data = self._call(prefix, lambda: obstore.get(self.store, prefix + MANIFEST).bytes())
        return cast(dict[str, Any], json.loads(bytes(data)))

    def _upload(self, key: str, source: Path) -> str:
        """Store a local file (multipart when large); its ETag."""

        def send() -> str:
            with source.open("rb") as handle:
                result = obstore.put(self.store, key, handle, chunk_size=_PART, max_concurrency=4)
            return str(result["e_tag"] or "")

        return self._call(key, send)

    # --- the Storage interface -----------------------------------------------------------
    def check(self) -> None:
        try:
            self._call(self.url, lambda: obstore.list_with_delimiter(self.store, None))
        except StorageConfigError:
            raise
        except FileNotFoundError as exc:
            raise StorageConfigError(f"the object store has no bucket for {self.url}") from exc
        except StorageError as exc:
            raise StorageConfigError(f"the object store at {self.url} is unusable: {exc}") from exc

    def put(self, key: str, data: bytes) -> None:
        check_key(key)
        self._call(key, lambda: obstore.put(self.store, key, data))

    def put_file(self, key: str, source: Path) -> None:
        check_key(key)
        self._upload(key, source)
        source.unlink(missing_ok=True)

    def put_tree(self, prefix: str, source: Path) -> int:
        check_prefix(prefix)
        # Hidden files (temp files of a writer) are no part of a tree, as on the local backend.
        files = sorted(
            p
            for p in source.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(source).parts)
        )
        names = [p.relative_to(source).as_posix() for p in files]
        for name in names:
            check_key(prefix + name)
        if self._exists(prefix + MANIFEST):
            raise FileExistsError(f"{prefix} is already stored")
        self.put(prefix + PENDING, b"")
        entries: list[dict[str, Any]] = []
        for path, name in zip(files, names, strict=True):
            entries.append(
                {
                    "name": name,
                    "size": path.stat().st_size,
                    "sha256": _sha256(path),
                    "etag": self._upload(prefix + name, path),
                }
            )
        manifest = json.dumps({"version": 1, "files": entries}, indent=1).encode()
        self._commit(prefix + MANIFEST, manifest)
        self._call(prefix, lambda: obstore.delete(self.store, prefix + PENDING))
        shutil.rmtree(source, ignore_errors=True)
        return sum(int(e["size"]) for e in entries)

    def _commit(self, key: str, manifest: bytes) -> None:
        """Create-only; a retried create that finds our own manifest in place has committed."""
        try:
            self._call(key, lambda: obstore.put(self.store, key, manifest, mode="create"))
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if self.get(key) == manifest:
                    return
            raise

    def get(self, key: str) -> bytes:
        check_key(key)
        return bytes(self._call(key, lambda: obstore.get(self.store, key).bytes()))

    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        check_key(key)
        result = self._call(key, lambda: obstore.get(self.store, key))
        raw = _ChunkReader(iter(result.stream(min_chunk_size=_CHUNK)))
        with io.BufferedReader(raw, buffer_size=_CHUNK) as handle:
            yield cast(BinaryIO, handle)

    def _exists(self, key: str) -> bool:
        try:
            self._call(key, lambda: obstore.head(self.store, key))
        except FileNotFoundError:
            return False
        return True

    def exists(self, key: str) -> bool:
        return self._exists(check_key(key))

    def delete(self, key: str) -> int:
        check_key(key)
        try:
            meta = self._call(key, lambda: obstore.head(self.store, key))
        except FileNotFoundError:
            return 0
        self._call(key, lambda: obstore.delete(self.store, key))
        return int(meta["size"])

    def delete_prefix(self, prefix: str) -> int:
        check_prefix(prefix)
        objects = self._list(prefix)
        if not objects:
            return 0
        freed = sum(o.size for o in self._visible(objects))
        trees = [o.key[: -len(MANIFEST)] for o in objects if _base(o.key) == MANIFEST]
        # A tree goes out of sight at once (a marker, then no manifest), then its files.
        for tree in trees:
            self.put(tree + PENDING, b"")
        self._delete([t + MANIFEST for t in trees])
        self._delete([o.key for o in objects if _base(o.key) not in _MARKERS])
        self._delete(
            sorted(
                {o.key for o in objects if _base(o.key) == PENDING} | {t + PENDING for t in trees}
            )
        )
        return freed

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            if batch:
                self._call(batch[0], lambda batch=batch: obstore.delete(self.store, batch))  # type: ignore[misc]

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        for obj in self._visible(self._list(prefix)):
            yield ObjectInfo(obj.key, obj.size)

    def size(self, prefix: str) -> int:
        return sum(info.size for info in self.list(prefix))

    def stale_entries(self, prefix: str, older_than: float) -> _Names:
        """The names directly under `prefix` (an object `<prefix><name>` or a folder of them)
        whose newest object, hidden ones included, was written before `older_than` (a Unix
        time): the sweep's candidates."""
        check_prefix(prefix)
        newest: dict[str, float] = {}

        def collect() -> None:
            newest.clear()
            for chunk in obstore.list(self.store, prefix, chunk_size=1000):
                for meta in chunk:
                    name = meta["path"][len(prefix) :].split("/", 1)[0]
                    stamp = meta["last_modified"].timestamp()
                    newest[name] = max(stamp, newest.get(name, stamp))

        self._call(prefix, collect)
        return sorted(name for name, stamp in newest.items() if stamp < older_than)

    @contextmanager
    def local_dir(self, prefix: str) -> Iterator[Path]:
        check_prefix(prefix)
        try:
            manifest = self._manifest(prefix)
        except FileNotFoundError:
            raise FileNotFoundError(prefix) from None
        objects = self._visible(self._list(prefix))
        version = "\n".join(f"{o.key}\t{o.size}\t{o.etag}" for o in objects)

        def fill(entry: Path) -> None:
            reusable = self._cached_etags(prefix)
            etags = self._download_tree(prefix, manifest, objects, entry / _TREE, reusable)
            (entry / _ETAGS).write_text(json.dumps(etags))

        with self.cache.entry(prefix, version, fill) as entry:
            yield entry / _TREE

    def _cached_etags(self, prefix: str) -> dict[tuple[str, str], Path]:
        """Files of older cached copies of the tree by (name, ETag): a tree whose card was
        rewritten is fetched again without its unchanged weights."""
        found: dict[tuple[str, str], Path] = {}
        for older in self.cache.versions(prefix):
            with contextlib.suppress(OSError, ValueError):
                etags = json.loads((older / _ETAGS).read_text())
                for name, etag in etags.items():
                    found[(name, etag)] = older / _TREE / name
        return found

    def _download_tree(
        self,
        prefix: str,
        manifest: dict[str, Any],
        objects: _Objects,
        folder: Path,
        reusable: dict[tuple[str, str], Path],
    ) -> dict[str, str]:
        """Download the tree into `folder`, verified; the ETag of each file."""
        committed = {str(e["name"]): e for e in manifest["files"]}
        present = {o.key[len(prefix) :] for o in objects}
        missing = sorted(set(committed) - present)
        if missing:
            raise FileNotFoundError(f"{prefix}{missing[0]} (listed in the manifest) is gone")
        folder.mkdir()
        etags = {}
        for obj in objects:
            name = obj.key[len(prefix) :]
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            etags[name] = obj.etag
            older = reusable.get((name, obj.etag))
            if older is not None and obj.etag:
                try:
                    os.link(older, target)  # verified when it was downloaded
                    continue
                except OSError:
                    pass  # evicted meanwhile
            etag, digest, size = self._download(obj.key, target)
            etags[name] = etag
            entry = committed.get(name)
            # A file rewritten since the commit (a new ETag) has no recorded digest to match.
            if entry is None or etag != entry["etag"]:
                continue
            if (digest, size) != (entry["sha256"], entry["size"]):
                raise StorageIntegrityError(f"{obj.key} does not match the sha256 of its manifest")
        return etags

    def _download(self, key: str, target: Path) -> tuple[str, str, int]:
        """Stream the object into `target`; its ETag, sha256 and size."""

        def fetch() -> tuple[str, str, int]:
            result = obstore.get(self.store, key)
            digest, size = hashlib.sha256(), 0
            with target.open("wb") as out:
                for chunk in result.stream(min_chunk_size=_CHUNK):
                    view = memoryview(chunk)
                    digest.update(view)
                    out.write(view)
                    size += len(view)
            return str(result.meta["e_tag"] or ""), digest.hexdigest(), size

        return self._call(key, fetch)

    @contextmanager
    def local_file(self, key: str) -> Iterator[Path]:
        check_key(key)
        meta = self._call(key, lambda: obstore.head(self.store, key))
        name = _base(key)

        def fill(folder: Path) -> None:
            self._download(key, folder / name)

        with self.cache.entry(key, f"{meta['size']}\t{meta['e_tag']}", fill) as folder:
            yield folder / name


class _ChunkReader(io.RawIOBase):
    """A raw binary stream over an iterator of byte chunks (an object being downloaded)."""

    def __init__(self, chunks: Iterator[Any]) -> None:
        self._chunks = chunks
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        count = min(len(target), len(self._buffer))
        target[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count


def s3_store(
    url: str,
    *,
    endpoint: str | None,
    region: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    retry_seconds: float,
) -> S3Store:
    """An S3Store for `s3://bucket/prefix` with these settings."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise StorageConfigError(f"TUNESERVE_STORAGE_URL is not s3://bucket[/prefix]: {url!r}")
    config: dict[str, Any] = {}
    if endpoint:
        config["endpoint"] = endpoint
    if region or endpoint:
        config["region"] = region or "us-east-1"  # servers other than AWS rarely mind
    if access_key_id:
        config["access_key_id"] = access_key_id
    if secret_access_key:
        config["secret_access_key"] = secret_access_key
    retry = timedelta(seconds=retry_seconds)
    return S3Store(
        parts.netloc,
        prefix=parts.path.strip("/") or None,
        config=cast(Any, config),
        client_options={
            "allow_http": bool(endpoint and endpoint.startswith("http://")),
            "connect_timeout": timedelta(seconds=5),
            # The whole request may last (a large download); a stalled read may not.
            "timeout": timedelta(hours=6),
            "read_timeout": timedelta(seconds=30),
        },
        retry_config={
            "max_retries": 1000,  # bounded by retry_timeout
            "retry_timeout": retry,
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=5),
                "base": 2,
            },
        },
    )


def _base(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _is_refusal(text: str) -> bool:
    codes = set(_S3_CODE.findall(text))
    return bool(codes & _REFUSED_CODES) or bool(re.search(r"\b(401|403) \w", text))


def _refused(exc: Exception) -> str:
    text = str(exc)
    codes = _S3_CODE.findall(text)
    reason = codes[0] if codes else _first_line(text)
    return f"the object store refused these credentials: {reason}"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else "unknown error"
