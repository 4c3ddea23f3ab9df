"""A small typed client of the tuneserve REST API, over httpx."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from app.batch.schemas import BatchPredictionList, BatchPredictionRead
from app.client.sse import SseMessage, parse_sse
from app.files.schemas import FileRead
from app.jobs.schemas import CheckpointList, JobList, JobRead, MetricList
from app.models.schemas import ModelList, PredictResponse
from app.usage.schemas import UsageRead

Model = TypeVar("Model", bound=BaseModel)
PredictInput = str | dict[str, str]

TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# The server sends a keep-alive comment every 15 s; a minute of silence is a dead connection.
STREAM_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class ClientError(Exception):
    """A failure the command reports in one line and exits 1 on."""


class ConnectionFailed(ClientError):
    """The server could not be reached, or the connection broke."""


class ApiErrorResponse(ClientError):
    """A 4xx or 5xx answer; the message is the API's `code: message`."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status_code = status_code
        self.code = code


def error_from_response(response: httpx.Response) -> ApiErrorResponse:
    """The common error shape `{"error": {"code", "message", "details"}}`, or the raw text."""
    try:
        error = response.json()["error"]
        return ApiErrorResponse(response.status_code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        text = " ".join(response.text.split())[:300] or response.reason_phrase
        return ApiErrorResponse(response.status_code, f"http_{response.status_code}", text)


class ApiClient:
    """One server, one API key: `Authorization: Bearer <key>` on every request."""

    def __init__(
        self, base_url: str, api_key: str, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.base_url = base_url
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=TIMEOUT,
            transport=transport,
        )

    def __enter__(self) -> "ApiClient":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- files ----------------------------------------------------------------------------
    def upload_file(
        self,
        path: Path,
        format: str | None = None,
        header: bool = True,
        column_names: str | None = None,
    ) -> FileRead:
        data = {"format": format} if format else {}
        if not header:
            data["header"] = "false"
        if column_names:
            data["column_names"] = column_names
        with path.open("rb") as handle:
            return self._call(
                FileRead,
                "POST",
                "/v1/files",
                files={"file": (path.name, handle)},
                data=data or None,
            )

    def get_file(self, file_id: str) -> FileRead:
        return self._call(FileRead, "GET", f"/v1/files/{file_id}")

    def download_file(self, file_id: str, target: Path) -> int:
        return self._download(f"/v1/files/{file_id}/content", target)

    def delete_file(self, file_id: str) -> None:
        self._delete(f"/v1/files/{file_id}")

    # --- jobs -----------------------------------------------------------------------------
    def create_job(self, spec: dict[str, Any], idempotency_key: str | None = None) -> JobRead:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._call(JobRead, "POST", "/v1/jobs", json=spec, headers=headers)

    def list_jobs(self, status: str | None = None, limit: int = 20) -> JobList:
        params: dict[str, str | int] = {"limit": limit}
        if status:
            params["status"] = status
        return self._call(JobList, "GET", "/v1/jobs", params=params)

    def get_job(self, job_id: str) -> JobRead:
        return self._call(JobRead, "GET", f"/v1/jobs/{job_id}")

    def cancel_job(self, job_id: str) -> JobRead:
        return self._call(JobRead, "POST", f"/v1/jobs/{job_id}/cancel")

    def job_metrics(self, job_id: str) -> MetricList:
        return self._call(MetricList, "GET", f"/v1/jobs/{job_id}/metrics")

    def job_checkpoints(self, job_id: str) -> CheckpointList:
        return self._call(CheckpointList, "GET", f"/v1/jobs/{job_id}/checkpoints")

    def delete_job(self, job_id: str) -> None:
        self._delete(f"/v1/jobs/{job_id}")

    def job_events(self, job_id: str, after: int = 0) -> Iterator[SseMessage]:
        """The job's Server-Sent Events after event `after` (sent as `Last-Event-ID`)."""
        headers = {"Last-Event-ID": str(after)} if after else {}
        path = f"/v1/jobs/{job_id}/events/stream"
        try:
            with self._http.stream("GET", path, headers=headers, timeout=STREAM_TIMEOUT) as answer:
                if answer.is_error:
                    answer.read()
                    raise error_from_response(answer)
                yield from parse_sse(answer.iter_lines())
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._transport_error(exc) from exc

    # --- batch predictions ----------------------------------------------------------------
    def create_batch(self, model_id: str, body: dict[str, Any]) -> BatchPredictionRead:
        path = f"/v1/models/{model_id}/batch-predictions"
        return self._call(BatchPredictionRead, "POST", path, json=body)

    def get_batch(self, batch_id: str) -> BatchPredictionRead:
        return self._call(BatchPredictionRead, "GET", f"/v1/batch-predictions/{batch_id}")

    def list_batches(self, limit: int = 20) -> BatchPredictionList:
        params = {"limit": limit}
        return self._call(BatchPredictionList, "GET", "/v1/batch-predictions", params=params)

    def cancel_batch(self, batch_id: str) -> BatchPredictionRead:
        path = f"/v1/batch-predictions/{batch_id}/cancel"
        return self._call(BatchPredictionRead, "POST", path)

    # --- models ---------------------------------------------------------------------------
    def list_models(self, limit: int = 100) -> ModelList:
        return self._call(ModelList, "GET", "/v1/models", params={"limit": limit})

    def download_model(self, model_id: str, target: Path) -> int:
        """The model's `.tar.gz` into `target`; its size in bytes."""
        return self._download(f"/v1/models/{model_id}/archive", target)

    def delete_model(self, model_id: str) -> None:
        self._delete(f"/v1/models/{model_id}")

    # --- usage ----------------------------------------------------------------------------
    def usage(self) -> UsageRead:
        return self._call(UsageRead, "GET", "/v1/usage")

    def predict(self, model_id: str, inputs: list[PredictInput]) -> PredictResponse:
        return self._call(
            PredictResponse, "POST", f"/v1/models/{model_id}/predict", json={"inputs": inputs}
        )

    # --- plumbing -------------------------------------------------------------------------
    def _download(self, path: str, target: Path) -> int:
        """Stream an answer into `target` (a hidden temp file renamed once complete, so an
        interrupted download leaves nothing that looks whole); the bytes written."""
        temp = target.with_name(f".{target.name}.part")
        size = 0
        try:
            with self._http.stream("GET", path, timeout=STREAM_TIMEOUT) as answer:
                if answer.is_error:
                    answer.read()
                    raise error_from_response(answer)
                with temp.open("wb") as out:
                    for chunk in answer.iter_bytes():
                        out.write(chunk)
                        size += len(chunk)
            temp.replace(target)
            return size
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._transport_error(exc) from exc
        finally:
            temp.unlink(missing_ok=True)

    def _delete(self, path: str) -> None:
        try:
            response = self._http.delete(path)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._transport_error(exc) from exc
        if response.is_error:
            raise error_from_response(response)

    def _call(self, shape: type[Model], method: str, path: str, **kwargs: Any) -> Model:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._transport_error(exc) from exc
        if response.is_error:
            raise error_from_response(response)
        try:
            return shape.model_validate_json(response.content)
        except ValidationError as exc:
            raise ClientError(
                f"unexpected answer from {method} {path}: {exc.error_count()} invalid fields; "
                "is this a tuneserve server of the same version?"
            ) from exc

    def _transport_error(self, exc: httpx.HTTPError | httpx.InvalidURL) -> ClientError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return ConnectionFailed(
                f"cannot reach tuneserve at {self.base_url} ({_reason(exc)}); start it with "
                "`tuneserve up`, or pass --url / set TUNESERVE_URL"
            )
        if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
            return ClientError(f"invalid server URL {self.base_url!r}: {_reason(exc)}")
        if isinstance(exc, httpx.TransportError):
            return ConnectionFailed(f"connection to {self.base_url} failed: {_reason(exc)}")
        return ClientError(f"request to {self.base_url} failed: {_reason(exc)}")


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
