"""The local-directory backend: key `a/b/c` is the file `<root>/a/b/c`."""

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from app.storage.base import ObjectInfo, check_key, check_prefix

_CHUNK = 1024 * 1024


class LocalStorage:
    """Objects as files under `root` (the data directory). Every write goes to a hidden
    sibling first (a name starting with `.`, never a key) and is renamed into place, so a
    reader sees a whole object or none; a folder is renamed into place the same way."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """Where `key` is on disk (for this backend's own callers and tests)."""
        return self.root / check_key(key)

    def _dir(self, prefix: str) -> Path:
        return self.root / check_prefix(prefix)[:-1]

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".put-{uuid.uuid4().hex}")
        try:
            temp.write_bytes(data)
            # A rename, never a write through: the target may be a hard link shared with a
            # checkpoint (a model's files are linked from the kept epoch they come from).
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)

    def put_file(self, key: str, source: Path) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".put-{uuid.uuid4().hex}")
        try:
            _move(source, temp)
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)

    def put_tree(self, prefix: str, source: Path) -> int:
        target = self._dir(prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
        try:
            _move(source, staging)
            size = _tree_size(staging)
            try:
                # A rename onto an existing non-empty folder fails: a tree is written once.
                os.rename(staging, target)  # the whole folder appears at once
            except OSError as exc:
                if target.exists():
                    raise FileExistsError(f"{prefix} is already stored") from exc
                raise
            return size
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        with self.path(key).open("rb") as handle:
            yield handle

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> int:
        path = self.path(key)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def delete_prefix(self, prefix: str) -> int:
        folder = self._dir(prefix)
        if not folder.is_dir():
            return 0
        # Out of sight first (one rename), then removed: no reader finds half a folder.
        doomed = folder.with_name(f".{folder.name}.deleted-{uuid.uuid4().hex[:8]}")
        try:
            os.replace(folder, doomed)
        except FileNotFoundError:
            return 0
        size = _tree_size(doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return size

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        folder = self._dir(prefix)
        if not folder.is_dir():
            return
        found = []
        for directory, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            base = Path(directory)
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = base / name
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    continue
                found.append(ObjectInfo(path.relative_to(self.root).as_posix(), size))
        yield from sorted(found, key=lambda info: info.key)

    def size(self, prefix: str) -> int:
        return sum(info.size for info in self.list(prefix))

    @contextmanager
    def local_dir(self, prefix: str) -> Iterator[Path]:
        folder = self._dir(prefix)
        if not folder.is_dir():
            raise FileNotFoundError(prefix)
        yield folder

    @contextmanager
    def local_file(self, key: str) -> Iterator[Path]:
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(key)
        yield path


def _move(source: Path, target: Path) -> None:
    """Rename, or copy then remove across file systems."""
    try:
        os.replace(source, target)
    except OSError:
        if source.is_dir():
            shutil.copytree(source, target)
            shutil.rmtree(source, ignore_errors=True)
        else:
            shutil.copyfile(source, target)
            source.unlink(missing_ok=True)


def _tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
