"""A model's folder as a `.tar.gz`, produced while it is sent: tar headers and file bytes are
compressed chunk by chunk, so neither memory nor disk ever holds the whole archive."""

import tarfile
import zlib
from collections.abc import Iterator
from datetime import datetime

from app.models.files import is_model_file
from app.storage import ObjectInfo, Storage
from app.storage.keys import model_prefix

_CHUNK = 1024 * 1024
_BLOCK = tarfile.BLOCKSIZE


def archive_members(storage: Storage, model_id: str) -> list[ObjectInfo]:
    """The model's loadable files (safetensors, config, tokenizer, card; never pickles)."""
    prefix = model_prefix(model_id)
    return [
        info
        for info in storage.list(prefix)
        if "/" not in info.key[len(prefix) :] and is_model_file(info.key.rsplit("/", 1)[1])
    ]


def archive_chunks(
    storage: Storage, model_id: str, members: list[ObjectInfo], mtime: datetime
) -> Iterator[bytes]:
    """The gzip-compressed tar stream of `members` under a folder named after the model."""
    # Level 1: weights barely compress, and a higher level only costs CPU time per download.
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
    stamp = int(mtime.timestamp())
    folder = tarfile.TarInfo(model_id)
    folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, stamp
    yield compressor.compress(folder.tobuf(format=tarfile.PAX_FORMAT))
    for info in members:
        entry = tarfile.TarInfo(f"{model_id}/{info.key.rsplit('/', 1)[1]}")
        entry.size, entry.mode, entry.mtime = info.size, 0o644, stamp
        yield compressor.compress(entry.tobuf(format=tarfile.PAX_FORMAT))
        sent = 0
        with storage.open(info.key) as handle:
            while sent < info.size and (chunk := handle.read(min(_CHUNK, info.size - sent))):
                sent += len(chunk)
                yield compressor.compress(chunk)
        if sent != info.size:
            # Files of a model never change; a short one was removed under us (a delete).
            raise OSError(f"{info.key} changed while it was archived")
        if info.size % _BLOCK:
            yield compressor.compress(b"\0" * (_BLOCK - info.size % _BLOCK))
    yield compressor.compress(b"\0" * (2 * _BLOCK)) + compressor.flush()
