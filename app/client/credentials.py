"""Where a client command finds the server and its API key."""

import os

from app.core.config import Settings

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "TUNESERVE_URL"
KEY_ENV = "TUNESERVE_API_KEY"


class MissingApiKey(Exception):
    """No key given and none saved by `tuneserve up`."""

    def __init__(self) -> None:
        super().__init__(
            f"no API key: pass --api-key or set {KEY_ENV} "
            "(make one with `tuneserve keys create --tenant NAME`)"
        )


def resolve_url(given: str | None) -> str:
    """`--url`, else $TUNESERVE_URL, else the local default."""
    return (given or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")


def resolve_api_key(settings: Settings, given: str | None) -> str:
    """`--api-key`, else $TUNESERVE_API_KEY, else the first key `tuneserve up` saved."""
    key = given or os.environ.get(KEY_ENV)
    if key:
        return key
    from app.auth.commands import first_key_path  # database imports only when needed

    path = first_key_path(settings)
    if path.is_file():
        saved = path.read_text().strip()
        if saved:
            return saved
    raise MissingApiKey()
