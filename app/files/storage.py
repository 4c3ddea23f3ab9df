"""Where uploaded files live on disk; names come from ids, never from users."""

from pathlib import Path

from app.core.config import Settings


def file_path(settings: Settings, file_id: str, fmt: str) -> Path:
    return settings.uploads_dir / f"{file_id}.{fmt}"
