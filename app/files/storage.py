"""Where uploaded files live; names come from ids, never from users.

Every write of an upload goes through `FileStorage`: an upload is first staged in a local temp
file (received in bounded chunks, then parsed from disk), and saved under its id only once it
has passed every check, then stored under its key through `app.storage` (`save`).
"""

import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from app.core.config import Settings
from app.storage import get_storage
from app.storage.keys import file_key

_CHUNK = 1024 * 1024


class UploadTooLarge(Exception):
    """The stream had more bytes than the limit; what was staged is removed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The file is larger than the limit of {limit} bytes.")
        self.limit = limit


class FileStorage(Protocol):
    """Staging and saving of uploads."""

    def staged(self) -> AbstractContextManager[Path]: ...

    def receive(self, stream: BinaryIO, staged: Path, limit: int) -> int: ...

    def writer(self, staged: Path) -> BinaryIO: ...

    def save(self, staged: Path, file_id: str, fmt: str) -> None: ...


def file_path(settings: Settings, file_id: str, fmt: str) -> Path:
    return settings.uploads_dir / f"{file_id}.{fmt}"


class LocalFileStorage:
    """Uploads as `<id>.<format>` files in `settings.uploads_dir`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @contextmanager
    def staged(self) -> Iterator[Path]:
        """A new empty temp file, removed when the block ends unless it was saved."""
        directory = self.settings.uploads_dir
        directory.mkdir(parents=True, exist_ok=True)
        # In the uploads directory, so that saving is a rename on one file system.
        fd, name = tempfile.mkstemp(dir=directory, prefix=".upload-")
        os.close(fd)
        path = Path(name)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def receive(self, stream: BinaryIO, staged: Path, limit: int) -> int:
        """Copy `stream` into the staged file in bounded chunks; its size in bytes."""
        size = 0
        with staged.open("wb") as out:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise UploadTooLarge(limit)
                out.write(chunk)
        return size

    def writer(self, staged: Path) -> BinaryIO:
        """The staged file opened for writing, unbuffered: what was written is in the file (an
        upload received part by part, checked from memory; an error's offset is read back)."""
        return staged.open("wb", buffering=0)

    def save(self, staged: Path, file_id: str, fmt: str) -> None:
        get_storage(self.settings).put_file(file_key(file_id, fmt), staged)


def file_storage(settings: Settings) -> FileStorage:
    return LocalFileStorage(settings)
