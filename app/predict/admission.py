"""Refuse a predict request whose model's queue is full before its body is read.

Reading and validating a 256-input body costs the event loop milliseconds; a tenant that keeps
sending them to a full queue would spend the loop (and, through the interpreter lock, the
forward thread) on requests that are refused anyway. So when the caller's key is in this
process's key cache (app/auth/cache.py: no database query here) and its model's queue or the
process's is full, the answer (429 or 503 `predict_overloaded`, Retry-After) comes at once.
Anything else, unknown keys included, goes on to the endpoint, which checks the same bounds.
"""

import re
from types import SimpleNamespace

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth.cache import get_principal_cache
from app.auth.service import hash_secret
from app.core.errors import ApiError, error_body

PREDICT_ROUTE = "/v1/models/{model_id}/predict"
PREDICT_PATH = re.compile(r"/v1/models/([^/]+)/(?:predict|hf-inference)/?")


class PredictAdmissionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = None
        if scope["type"] == "http" and scope["method"] == "POST":
            match = PREDICT_PATH.fullmatch(scope["path"])
            if match is not None:
                error = _refusal(scope, match.group(1))
        if error is None:
            await self.app(scope, receive, send)
            return
        # Labelled as the predict route in the metrics (the router, which sets it, is not reached).
        scope["route"] = SimpleNamespace(path=PREDICT_ROUTE, path_format=PREDICT_ROUTE)
        response = JSONResponse(
            error_body(error.code, error.message), error.status_code, headers=error.headers
        )
        await response(scope, receive, send)


def _refusal(scope: Scope, model_id: str) -> ApiError | None:
    service = getattr(scope["app"].state, "predict", None)
    if service is None or not service.batcher.queued:
        return None
    authorization = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret:
        return None
    principal = get_principal_cache().get(hash_secret(secret.strip()))
    if principal is None:
        return None
    error: ApiError | None = service.refusal(principal.tenant_id, model_id)
    return error
