"""Secrets and server paths stay out of logs and answers, on a real `tuneserve up`."""

from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.support.service import Service
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows

pytestmark = pytest.mark.e2e
PASSWORD = "pw-not-for-logs"
METRICS_TOKEN = "scrape-token-123"


def test_logs_metrics_and_job_errors_keep_secrets(
    tmp_path: Path, tiny_model_dir: Path, postgres_url: str
) -> None:
    # PostgreSQL trusts local connections here, so the password is sent and ignored.
    url = make_url(postgres_url).set(password=PASSWORD).render_as_string(hide_password=False)
    data_dir = tmp_path / "data"
    env = {
        "TUNESERVE_DATA_DIR": str(data_dir),
        "TUNESERVE_DATABASE_URL": url,
        "TUNESERVE_BASE_MODELS_DIR": str(tiny_model_dir.parent),
        "TUNESERVE_METRICS_TOKEN": METRICS_TOKEN,
        "HF_HUB_OFFLINE": "1",
    }
    service = Service(env, tmp_path, embedded=True, issue_key=False)
    try:
        service.start()
        first = (data_dir / "first-api-key").read_text().strip()
        log = (tmp_path / "up.log").read_text()
        assert first not in log and PASSWORD not in log
        assert "***@" in log and str(data_dir / "first-api-key") in log
        migrated = service.cli("migrate")
        assert migrated.returncode == 0, migrated.stderr
        assert PASSWORD not in migrated.stdout + migrated.stderr and "***@" in migrated.stdout

        # /metrics counts every tenant's jobs: with a token set, only the scraper reads it
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Bearer {first}"},
        ):
            refused = httpx.get(f"{service.url}/metrics", headers=headers, timeout=30)
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"]["code"] in (
                "missing_metrics_token",
                "invalid_metrics_token",
            )
        scraped = httpx.get(
            f"{service.url}/metrics",
            headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
            timeout=30,
        )
        assert scraped.status_code == 200 and "tuneserve_jobs" in scraped.text

        # A job whose file vanished from the volume: the error names no server path
        service.api_key = first
        train = service.upload(sentiment_rows(20))
        dev = service.upload(sentiment_rows(10, seed=1))
        stored = next(service.settings().uploads_dir.glob(f"{train}.*"))
        stored.unlink()
        job = service.wait_for(service.create_job(tiny_spec(train, dev))["id"])
        assert job["status"] == "failed" and job["error"]["code"] == "invalid_file", job
        message = job["error"]["message"]
        # The storage key of the missing file, never its path on the server's disk.
        assert f"files/{train}" in message
        assert str(tmp_path) not in message and str(data_dir) not in message
    finally:
        service.stop()
