"""The job page in headless Chromium (Debian's package, driven by Playwright): live curves
gain points while a real worker trains; the model page answers a prediction."""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.service import Service
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = os.environ.get("TUNESERVE_SCREENSHOT_DIR")


@pytest.fixture
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        message = "Chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def service(tmp_path: Path, tiny_model_dir: Path) -> Iterator[Service]:
    env = {
        "TUNESERVE_DATA_DIR": str(tmp_path / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(tiny_model_dir.parent),
        "TUNESERVE_FAULT_INJECTION_STEP_DELAY_SECONDS": "0.1",  # about 10 s of training
        "TUNESERVE_LOSS_EVENT_EVERY_STEPS": "5",
        "HF_HUB_OFFLINE": "1",
    }
    service = Service(env, tmp_path, embedded=True)
    try:
        yield service.start()
    finally:
        service.stop()


def chart_points(page: object, chart: str) -> int:
    return int(
        page.evaluate(  # type: ignore[attr-defined]
            f"(window.tuneserve?.{chart}.data.datasets || [])"
            ".filter(d => d.label !== 'best epoch')"
            ".reduce((n, d) => n + d.data.length, 0)"
        )
    )


def test_job_page_curves_grow_live_and_model_page_predicts(
    service: Service, browser: object
) -> None:
    train, dev = service.upload(sentiment_rows(240)), service.upload(sentiment_rows(60, seed=1))
    hyperparameters = {"num_train_epochs": 3, "learning_rate": 5e-3, "seed": 1}
    job = service.create_job(
        tiny_spec(train, dev, hyperparameters=hyperparameters, metrics=["accuracy", "f1"])
    )
    page = browser.new_page(viewport={"width": 1200, "height": 900})  # type: ignore[attr-defined]
    page.goto(f"{service.url}/ui")
    page.evaluate(f"localStorage.setItem('tuneserve-api-key', '{service.api_key}')")

    page.goto(f"{service.url}/ui/jobs/{job['id']}")
    page.wait_for_function("window.tuneserve && window.tuneserve.events.length > 0")
    page.wait_for_function(
        "(window.tuneserve.lossChart.data.datasets[0]?.data.length || 0) > 0", timeout=60_000
    )
    first = chart_points(page, "lossChart")
    assert service.job(job["id"])["status"] == "running"
    page.wait_for_function(
        f"window.tuneserve.lossChart.data.datasets[0].data.length > {first}", timeout=60_000
    )
    assert chart_points(page, "lossChart") > first  # gained points without a reload
    page.wait_for_function("window.tuneserve.done === true", timeout=120_000)

    assert page.inner_text("#status") == "succeeded"
    assert page.locator("#epochs tbody tr").count() == 3
    assert chart_points(page, "metricsChart") == 3 * 2  # accuracy and f1 for each epoch
    losses = page.evaluate("window.tuneserve.lossChart.data.datasets.map(d => d.label)")
    assert losses == ["train loss", "eval loss", "best epoch"]
    best = service.job(job["id"])["best_epoch"]
    assert page.inner_text("#best").startswith(str(best))
    assert page.inner_text("#epochs tbody tr.best td").startswith(f"{best} ★")
    page.wait_for_selector("#checkpoints tbody tr")
    assert page.locator("#checkpoints tbody tr").count() == 3
    assert page.locator("#checkpoints tbody tr.best").count() == 1
    page.locator("#checkpoints tbody tr:not(.best) button").first.click()
    page.wait_for_function("document.querySelectorAll('#checkpoints a').length === 2")
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "ui-job-page.png"), full_page=True)
        with service.client() as client:
            png = client.get(f"/v1/jobs/{job['id']}/metrics.png").content
        (Path(SCREENSHOTS) / "metrics.png").write_bytes(png)

    model_id = service.job(job["id"])["model_id"]
    page.goto(f"{service.url}/ui/models/{model_id}")
    page.fill("#text", "a great and happy movie")
    page.click("button[type=submit]")
    page.wait_for_selector("#predicted-label")
    assert page.inner_text("#predicted-label") in ("pos", "neg")
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "ui-model-page.png"), full_page=True)

    page.goto(f"{service.url}/ui")
    page.wait_for_selector(f"a[href='/ui/jobs/{job['id']}']")

    # The pages are only shells: without a valid key the API refuses them their data.
    page.evaluate("localStorage.setItem('tuneserve-api-key', 'tsk_wrong')")
    page.goto(f"{service.url}/ui/jobs/{job['id']}")
    page.wait_for_selector("#error:not([hidden])")
    assert "invalid_api_key" in page.inner_text("#error")
    assert httpx.get(f"{service.url}/ui/jobs/{job['id']}").status_code == 200
