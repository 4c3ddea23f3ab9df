"""Text from exceptions made fit for tenants: no server paths, no passwords in URLs.

A job's error message is shown to the tenant that owns the job; the exception behind it may
name the data directory, another job's folder or a database URL with its password.
"""

import re

PATH_PLACEHOLDER = "<path>"

# An absolute POSIX path: a '/' that does not follow a word character, '.', ':' or another '/'
# (so "a/b" and "http://host/x" are not paths), then everything up to a quote, space or bracket.
_POSIX_PATH = re.compile(r"(?<![\w.:/~-])(?:~)?/[^\s'\"`,;:()\[\]{}<>|]+")
_WINDOWS_PATH = re.compile(r"(?<![\w])[A-Za-z]:\\[^\s'\"`,;()\[\]{}<>|]*")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][\w+.\-]*://[^\s/:@]*:)[^\s/@]+(?=@)")
_FILE_URL = re.compile(r"file://\S*")

DEFAULT_LIMIT = 500


def redact(text: str) -> str:
    """The text with absolute paths replaced by '<path>' and URL passwords by '***'."""
    text = _URL_PASSWORD.sub(r"\g<head>***", text)
    text = _FILE_URL.sub(PATH_PLACEHOLDER, text)
    text = _WINDOWS_PATH.sub(PATH_PLACEHOLDER, text)
    return _POSIX_PATH.sub(PATH_PLACEHOLDER, text)


def public_message(exc: BaseException, limit: int = DEFAULT_LIMIT, with_type: bool = True) -> str:
    """One line about `exc` for a tenant: its type, and its first line redacted and shortened."""
    lines = str(exc).strip().splitlines()
    first = redact(lines[0].strip()) if lines else ""
    if len(first) > limit:
        first = first[: limit - 1] + "…"
    if not with_type:
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def display_url(url: str) -> str:
    """A database or broker URL fit for a log: the password, if any, shown as ***."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy parses: mask by pattern
        return redact(url) if "://" in url else url
