"""A bounded local cache of downloaded objects, shared by the processes of one machine.

An entry is a folder `<root>/<name>-<version>/`, made whole in a hidden temp folder and renamed
into place, so it is never seen in part. A user holds a shared `flock` on the entry folder for
as long as it reads it; eviction (oldest use first, past the byte bound) takes an exclusive
lock without waiting, so an entry in use is never removed.
"""

import contextlib
import fcntl
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# Temp folders of a process that died mid-download are removed once this old.
_STALE_TEMP_SECONDS = 3600.0


class LocalCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def versions(self, name: str) -> list[Path]:
        """The entry folders of `name` at any version (to reuse unchanged files from)."""
        if not self.root.is_dir():
            return []
        return sorted(self.root.glob(f"{_name_digest(name)}-*"))

    @contextmanager
    def entry(self, name: str, version: str, fill: Callable[[Path], None]) -> Iterator[Path]:
        """The entry folder of `name` at `version` (made by `fill(folder)` when missing), held
        for the block."""
        self.root.mkdir(parents=True, exist_ok=True)
        digest = _name_digest(name)
        folder = self.root / f"{digest}-{hashlib.sha256(version.encode()).hexdigest()[:16]}"
        while True:
            fd = self._hold(folder)
            if fd is not None:
                break
            temp = self.root / f".fill-{uuid.uuid4().hex}"
            temp.mkdir()
            try:
                fill(temp)
                with contextlib.suppress(OSError):  # another process made it meanwhile
                    os.rename(temp, folder)
            finally:
                shutil.rmtree(temp, ignore_errors=True)
            self._evict(keep=folder)
        try:
            os.utime(folder)  # the LRU clock
            yield folder
        finally:
            os.close(fd)

    def _hold(self, folder: Path) -> int | None:
        """A shared lock on `folder` when it exists (and still is the folder locked)."""
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            return None
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            if os.stat(folder).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # evicted between the open and the lock
        return None

    def _evict(self, keep: Path) -> None:
        entries = []
        for path in self.root.iterdir():
            try:
                stamp = path.stat().st_mtime
            except FileNotFoundError:
                continue
            if path.name.startswith("."):
                if stamp < time.time() - _STALE_TEMP_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)
                continue
            entries.append((stamp, path, _size(path)))
        total = sum(size for _, _, size in entries)
        for _, path, size in sorted(entries):
            if total <= self.max_bytes:
                break
            if path != keep and self._remove_unused(path):
                total -= size

    def _remove_unused(self, folder: Path) -> bool:
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # in use
            doomed = folder.with_name(f".evicted-{uuid.uuid4().hex}")
            try:
                os.rename(folder, doomed)
            except FileNotFoundError:
                return False
        finally:
            os.close(fd)
        shutil.rmtree(doomed, ignore_errors=True)
        return True


def _name_digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:24]


def _size(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            if path.is_file():
                total += path.stat().st_size
    return total
