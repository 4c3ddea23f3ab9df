"""Receiving an upload: the event loop only reads the body; a worker thread parses it.

`receive_upload` reads the multipart body from the request on the event loop (what uvicorn has
buffered, at each call) and hands it to a worker thread, which parses the multipart framing (python-multipart's
streaming `MultipartParser`), writes the file part to its staged temp file and checks it as it
arrives (`scan_stream`): a file over a row, line or column limit is answered 413 as soon as the
limit is passed, without reading the rest (uvicorn discards what the client still sends).
The uploads' threads together keep to `upload_cpu_share` of a core: they check the file in
16 KiB pieces and sleep between them as that share asks, so the GIL is given up often and the
event loop and the predict thread seldom wait for it.

At most `max_concurrent_uploads` uploads are received at once per process; one more waits up
to `upload_slot_wait_seconds` for a slot, then gets 429 `too_many_uploads` with Retry-After.

The check runs with the parameters known when the file part starts: the query string and the
form fields before it (httpx, requests, curl -F and HTML forms send fields in order, the file
last). A limit error found then is final; another error waits for the end of the body, and a
field that comes after the file and changes the parameters has the file checked again, from
disk, with them.
"""

import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.lowlevel import RunVar
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect

from app.core.config import Settings
from app.core.errors import ApiError
from app.files import service
from app.files.parsing import FileLimitError, FileParseError, ParseLimits
from app.files.storage import UploadTooLarge, file_storage

_BUFFER_BYTES = 1024 * 1024  # of the file, read by the check, kept before compacting
_PIECE_BYTES = 16 * 1024  # of the file, checked at a time
_FIELDS = ("format", "header", "column_names")
_FORMAT: TypeAdapter[Literal["csv", "tsv", "jsonl"] | None] = TypeAdapter(
    Literal["csv", "tsv", "jsonl"] | None
)
_BOOL: TypeAdapter[bool | None] = TypeAdapter(bool | None)

_slots: RunVar[anyio.CapacityLimiter] = RunVar("upload_slots")


class _Pacer:
    """Keeps the upload threads of the process, together, to `share` of one core: each pays
    for its CPU time w with w / share seconds on a shared clock, and sleeps while it is ahead."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clock = 0.0

    def pay(self, work: float, share: float) -> None:
        if work <= 0 or share >= 1:
            return
        now = time.monotonic()
        with self.lock:
            self.clock = max(self.clock, now - work) + work / share
            ahead = self.clock - now
        if ahead > 0:
            time.sleep(min(ahead, 1.0))


_pacer = _Pacer()


def upload_slots(settings: Settings) -> anyio.CapacityLimiter:
    """This event loop's (this process's) upload slots."""
    try:
        slots = _slots.get()
    except LookupError:
        slots = anyio.CapacityLimiter(settings.max_concurrent_uploads)
        _slots.set(slots)
    if slots.total_tokens != settings.max_concurrent_uploads:
        slots.total_tokens = settings.max_concurrent_uploads
    return slots


@dataclass(frozen=True)
class QueryParameters:
    header: bool | None = None
    column_names: str | None = None


@asynccontextmanager
async def receive_upload(
    request: Request, settings: Settings, query: QueryParameters
) -> AsyncIterator[service.CheckedUpload]:
    """The request's upload, received, staged and checked; the staged file is removed when the
    block ends unless `store_upload` saved it."""
    kind, options = parse_options_header(request.headers.get("content-type"))
    if kind != b"multipart/form-data":
        raise _invalid("file", "missing", "Field required (send multipart/form-data)")
    boundary = options.get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_request", "The multipart body has no boundary.")
    slots = upload_slots(settings)
    try:
        with anyio.fail_after(settings.upload_slot_wait_seconds):
            await slots.acquire()
    except TimeoutError:
        raise ApiError(
            429,
            "too_many_uploads",
            f"{settings.max_concurrent_uploads} uploads are being received by this server; "
            "retry shortly.",
            headers={"Retry-After": "5"},
        ) from None
    try:
        body = _Body(request)
        with ExitStack() as stack:
            staged = stack.enter_context(file_storage(settings).staged())
            receiver = _Receiver(settings, boundary, staged, query, body.pull)
            try:
                # A thread of its own (not one of the endpoints' pool): it waits for the body.
                upload = await anyio.to_thread.run_sync(
                    receiver.run, limiter=anyio.CapacityLimiter(1)
                )
            finally:
                receiver.close()
            yield upload
            # Removing a large staged file is not for the event loop.
            await anyio.to_thread.run_sync(stack.pop_all().close)
    finally:
        slots.release()


class _Body:
    """The request body, read on the event loop in batches for the worker thread."""

    def __init__(self, request: Request) -> None:
        self.receive = request.receive
        self.done = False

    def pull(self) -> list[bytes]:
        """From the worker thread: the next batch of body chunks ([] at the end)."""
        return anyio.from_thread.run(self._next)

    async def _next(self) -> list[bytes]:
        # What the server has buffered (uvicorn hands it over whole, up to its flow-control
        # limit): a batch per call, and nothing waits for bytes a client holds back.
        while not self.done:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            self.done = not message.get("more_body", False)
            if chunk := message.get("body", b""):
                return [chunk]
        return []


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


class _Receiver:
    """Runs in the worker thread: parses the multipart body as it comes, writes the file part to
    the staged file, and serves it to the check (`read`) from memory."""

    def __init__(
        self,
        settings: Settings,
        boundary: bytes,
        staged: Path,
        query: QueryParameters,
        pull: Callable[[], list[bytes]],
    ) -> None:
        self.settings = settings
        self.staged = staged
        self.query = query
        self.pull = pull
        self.parser = MultipartParser(
            boundary,
            cast(
                Any,
                {
                    "on_part_begin": self._part_begin,
                    "on_part_data": self._part_data,
                    "on_part_end": self._part_end,
                    "on_header_field": self._header_field,
                    "on_header_value": self._header_value,
                    "on_header_end": self._header_end,
                    "on_headers_finished": self._headers_finished,
                },
            ),
        )
        self.fields: dict[str, str] = {}
        self.part = _Part()
        self.header_name = bytearray()
        self.header_value = bytearray()
        self.disposition = b""
        self.field_limit = max(64 * 1024, 4 * settings.max_upload_line_chars)
        self.body_done = False
        self.filename: str | None = None  # set when the file part starts
        self.file_done = False
        self.out: BinaryIO | None = None
        self.size = 0
        # From the file's start (its first bytes may come with its headers) until the check ends.
        self.checking = True
        self.buffer = bytearray()  # received, not yet read by the check
        self.position = 0
        self.cpu = time.thread_time()

    # The check's file: what has arrived of the file part.
    def read(self, size: int = -1) -> bytes:
        # Small pieces, each followed by a pause (_pace): the GIL is given up often, so the
        # event loop and the predict thread wait little for it.
        size = _PIECE_BYTES if size < 0 else min(size, _PIECE_BYTES)
        while self.position == len(self.buffer) and not self.file_done:  # what has come
            self._feed()
        end = len(self.buffer) if size < 0 else self.position + size
        data = bytes(self.buffer[self.position : end])
        self.position += len(data)
        if self.position > _BUFFER_BYTES:
            del self.buffer[: self.position]
            self.position = 0
        self._pace()
        return data

    def _pace(self) -> None:
        """Sleep as the process's upload CPU share asks (called by the worker thread)."""
        cpu, self.cpu = self.cpu, time.thread_time()
        _pacer.pay(self.cpu - cpu, self.settings.upload_cpu_share)

    def run(self) -> service.CheckedUpload:
        while self.filename is None and not self.body_done:
            self._feed()
        if self.filename is None:
            raise _invalid("file", "missing", "Field required")
        filename = self.filename
        early = self._parameters(final=False)
        deferred: FileParseError | None = None
        summary = None
        if early is not None:
            try:
                fmt, header, names = early
                summary = service.scan_upload(
                    cast(BinaryIO, self), self.staged, fmt, self.settings, header, names
                )
            except FileLimitError as exc:
                raise service.check_error(filename, exc) from exc
            except FileParseError as exc:
                deferred = exc
        self.checking = False
        self.buffer = bytearray()
        while not self.body_done:
            self._feed()
        self.parser.finalize()
        if not self.file_done:
            raise ApiError(400, "bad_request", "The multipart body ends inside the file.")
        final = self._parameters(final=True)
        assert final is not None
        fmt, header, names = final
        if self.size == 0:
            raise service.empty_file()
        try:
            if deferred is not None and final == early:
                raise deferred
            if summary is None or final != early:
                summary = service.scan_table(
                    self.staged, fmt, _limits(self.settings), header, names
                )
        except FileParseError as exc:
            raise service.check_error(filename, exc) from exc
        return service.CheckedUpload(self.staged, filename, fmt, self.size, summary, header)

    def close(self) -> None:
        if self.out is not None:
            self.out.close()

    def _feed(self) -> None:
        if self.body_done:
            raise ApiError(400, "bad_request", "The multipart body ends before its last part.")
        chunks = self.pull()
        if not chunks:
            self.body_done = True
        try:
            for chunk in chunks:
                self.parser.write(chunk)
        except UploadTooLarge as exc:
            raise ApiError(413, "file_too_large", str(exc)) from exc
        except MultipartParseError as exc:
            raise ApiError(400, "bad_request", f"The multipart body is malformed: {exc}") from exc
        self._pace()

    def _parameters(self, final: bool) -> tuple[str, bool, list[str] | None] | None:
        """The check's parameters from what has arrived; None (not final) when they are not
        valid yet: a field after the file may settle them, or the end answers the error."""
        assert self.filename is not None
        try:
            fmt = _validated("format", _FORMAT, self.fields.get("format"))
            form_header = _validated("header", _BOOL, self.fields.get("header"))
        except RequestValidationError:
            if not final:
                return None
            raise
        try:
            header = _one_of("header", form_header, self.query.header) is not False
            names = service.parse_column_names(
                cast(
                    str | None,
                    _one_of(
                        "column_names",
                        self.fields.get("column_names") or None,
                        self.query.column_names,
                    ),
                ),
                self.settings,
            )
            checked = service.upload_format(self.filename, fmt, header, names)
        except ApiError:
            if not final:
                return None
            raise
        return checked, header, names

    def _part_begin(self) -> None:
        self.part = _Part()
        self.disposition = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]
        if len(self.header_value) > self.field_limit:
            raise ApiError(400, "bad_request", "A multipart header is too long.")

    def _header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.disposition = bytes(self.header_value)
        self.header_name.clear()
        self.header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        if b"name" not in options:
            raise ApiError(400, "bad_request", "A multipart part has no name.")
        self.part.name = _text(options[b"name"])
        if b"filename" in options:
            self.part.filename = _text(options[b"filename"])
        if self.part.name == "file":
            if self.part.filename is None:
                raise _invalid("file", "value_error", "Expected a file, received a text field")
            if self.filename is not None:
                raise _invalid("file", "value_error", "One file per upload")
            self.filename = self.part.filename or "upload"
            self.out = file_storage(self.settings).writer(self.staged)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part.name == "file":
            assert self.out is not None
            self.size += end - start
            if self.size > self.settings.max_upload_bytes:
                raise UploadTooLarge(self.settings.max_upload_bytes)
            piece = memoryview(data)[start:end]
            self.out.write(piece)
            if self.checking:
                self.buffer += piece
        elif self.part.name in _FIELDS:
            self.part.data += data[start:end]
            if len(self.part.data) > self.field_limit:
                raise ApiError(
                    400, "bad_request", f"The form field '{self.part.name}' is too long."
                )

    def _part_end(self) -> None:
        if self.part.name == "file":
            self.file_done = True
            if self.out is not None:
                self.out.close()
        elif self.part.name in _FIELDS:
            self.fields[self.part.name] = _text(bytes(self.part.data))


def _limits(settings: Settings) -> ParseLimits:
    return service.upload_limits(settings)


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _one_of(name: str, form: object, query: object) -> object:
    """A parameter that may come as a form field or in the query string, not both differently."""
    if form is not None and query is not None and form != query:
        raise ApiError(
            422,
            "conflicting_parameters",
            f"'{name}' is given both as a form field and in the query string, differently.",
        )
    return form if form is not None else query


def _invalid(name: str, kind: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": ("body", name), "msg": message}])


def _validated(name: str, adapter: TypeAdapter[Any], value: str | None) -> Any:
    """A form field as FastAPI reads it (an empty value is no value)."""
    try:
        return adapter.validate_python(value or None)
    except ValidationError as exc:
        raise RequestValidationError(
            [{"type": e["type"], "loc": ("body", name), "msg": e["msg"]} for e in exc.errors()]
        ) from exc
