"""One JSON error shape for every 4xx and 5xx: {"error": {"code", "message", "details"}}."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.storage.base import StorageError

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a user can act on, with a stable machine-readable code."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


class NotFound(ApiError):
    def __init__(self, what: str, ident: str) -> None:
        super().__init__(404, f"{what}_not_found", f"No {what} with id '{ident}'.")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[Any] | None = None


class ErrorResponse(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: ErrorDetail


_DESCRIPTIONS = {
    400: "Malformed request (bad JSON, bad cursor, unreadable file)",
    401: "Missing, unknown or revoked API key",
    404: "No such resource for this tenant",
    409: "Conflict with the resource's state",
    413: "Request, file or batch over a configured limit",
    415: "Unsupported file format",
    422: "Invalid request",
    429: "Over a limit of this tenant (queued jobs, open streams, predict queue); retry after Retry-After",
    503: "Database or object store unavailable; retry",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` documenting the error shape for the given statuses."""
    # Always as JSON, also on routes whose success answer is another media type (SSE).
    json_content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    return {
        status: {
            "model": ErrorResponse,
            "description": _DESCRIPTIONS[status],
            "content": json_content,
        }
        for status in statuses
    }


V1_ERRORS = error_responses(400, 401, 404, 409, 413, 415, 422, 429, 503)


def error_body(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


def _validation_details(exc: RequestValidationError) -> list[Any]:
    details = []
    for err in exc.errors():
        details.append(
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "msg": err.get("msg", ""),
                "type": err.get("type", ""),
            }
        )
    return details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        if any(d["type"] == "json_invalid" for d in details):
            return JSONResponse(
                error_body("malformed_json", "The request body is not valid JSON.", details),
                status_code=400,
            )
        summary = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details)
        return JSONResponse(
            error_body("validation_error", f"Invalid request: {summary}", details),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(OperationalError)
    async def _database_down(_request: Request, exc: OperationalError) -> JSONResponse:
        logger.warning("database unavailable: %s", exc)
        return JSONResponse(
            error_body("database_unavailable", "The database is unavailable; retry shortly."),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(StorageError)
    async def _storage_down(_request: Request, exc: StorageError) -> JSONResponse:
        logger.warning("object store unavailable: %s", exc)
        return JSONResponse(
            error_body("storage_unavailable", "The object store is unavailable; retry shortly."),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return JSONResponse(
            error_body("internal_error", "Internal server error; see the server log."),
            status_code=500,
        )
