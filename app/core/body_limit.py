"""Refuse request bodies over the configured size, before they are read into memory."""

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import error_body


def too_large_message(limit: int) -> str:
    return f"The request body is larger than this endpoint's limit of {limit} bytes."


class BodySizeLimitMiddleware:
    """413 from the Content-Length header when it is declared, else once the stream passes it."""

    def __init__(self, app: ASGIApp, limit_for_path: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for_path = limit_for_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for_path(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = JSONResponse(
                error_body("request_too_large", too_large_message(limit)), status_code=413
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException, so that FastAPI's body parsing passes it on unchanged.
                    raise HTTPException(413, too_large_message(limit))
            return message

        await self.app(scope, limited_receive, send)
