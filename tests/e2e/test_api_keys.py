"""`tuneserve up` makes a first key; `tuneserve keys` creates, lists and revokes keys live."""

import time
from pathlib import Path

import httpx
import pytest

from app.core.config import get_settings
from tests.support.service import Service

pytestmark = pytest.mark.e2e


def status_with(service: Service, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{service.url}/v1/jobs", headers=headers, timeout=30).status_code


def test_first_key_then_keys_commands(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    service = Service({"TUNESERVE_DATA_DIR": str(data_dir)}, tmp_path, True, issue_key=False)
    try:
        service.start()
        first = (data_dir / "first-api-key").read_text().strip()
        log = (tmp_path / "up.log").read_text()
        assert first not in log  # the log is often world-readable; the key file is 0600
        assert f"first API key (tenant 'default') saved to {data_dir / 'first-api-key'}" in log
        assert status_with(service, first) == 200
        assert status_with(service, None) == 401

        created = service.cli("keys", "create", "--tenant", "research", "--name", "ci")
        assert created.returncode == 0, created.stderr
        new_key = next(w for w in created.stdout.split() if w.startswith("tsk_"))
        assert status_with(service, new_key) == 200

        listed = service.cli("keys", "list")
        assert listed.returncode == 0, listed.stderr
        assert "research" in listed.stdout and "default" in listed.stdout
        assert new_key[:12] in listed.stdout and new_key not in listed.stdout
        key_id = next(
            w
            for line in listed.stdout.splitlines()
            if "research" in line
            for w in line.split()
            if w.startswith("key_")
        )

        revoked = service.cli("keys", "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        # No restart: refused once the API's key cache (AUTH_CACHE_SECONDS) lets it go.
        deadline = time.monotonic() + get_settings().auth_cache_seconds + 5
        while status_with(service, new_key) != 401:
            assert time.monotonic() < deadline, "the revoked key is still accepted"
            time.sleep(0.2)
        assert status_with(service, first) == 200
        assert service.cli("keys", "revoke", key_id).returncode == 1
        assert "revoked" in service.cli("keys", "list", "--all").stdout
    finally:
        service.stop()
    # A restart does not make another first key.
    service.start()
    try:
        assert (data_dir / "first-api-key").read_text().strip() == first
        assert (tmp_path / "up.log").read_text().count("first API key") == 1
    finally:
        service.stop()
