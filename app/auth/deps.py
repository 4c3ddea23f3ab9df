"""The `PrincipalDep` dependency: every /v1 route needs `Authorization: Bearer <key>`."""

from typing import Annotated

from fastapi import Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.cache import get_principal_cache
from app.auth.service import Principal, authenticate, hash_secret
from app.core.db import session_scope
from app.core.errors import ApiError

bearer_scheme = HTTPBearer(
    auto_error=False, description="An API key made with `tuneserve keys create`."
)


class Unauthorized(ApiError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(401, code, message, headers={"WWW-Authenticate": "Bearer"})


async def get_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    if credentials is None:
        raise Unauthorized(
            "missing_api_key",
            "This endpoint needs an API key: send 'Authorization: Bearer <key>'. "
            "Make one with `tuneserve keys create --tenant NAME`.",
        )
    secret = credentials.credentials
    cache = get_principal_cache()
    key_hash = hash_secret(secret)
    principal = cache.get(key_hash)
    if principal is None:
        principal = await run_in_threadpool(_look_up, secret)
        if principal is None:
            raise Unauthorized("invalid_api_key", "The API key is unknown or has been revoked.")
        cache.put(key_hash, principal)
    return principal


def _look_up(secret: str) -> Principal | None:
    # A session of its own, closed at once: the request's session may be opened later, in
    # another thread, and no connection is held across the hop.
    with session_scope() as session:
        return authenticate(session, secret)


PrincipalDep = Annotated[Principal, Depends(get_principal)]
