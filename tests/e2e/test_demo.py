"""The README's quick start: `tuneserve up &` and, at once, `tuneserve demo` (which must wait
for the service and its first API key)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.service import ROOT, Service
from tests.support.tiny_model import sentiment_rows

pytestmark = pytest.mark.e2e
HEADER = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"


def write_mrpc_like(path: Path, count: int, seed: int) -> None:
    rows = [
        f"{1 if row['label'] == 'pos' else 0}\t{i}\t{i}\t{row['sentence']}\t{row['sentence']}"
        for i, row in enumerate(sentiment_rows(count, seed=seed))
    ]
    path.write_text("\n".join([HEADER, *rows]) + "\n")


def test_demo_started_before_the_service_waits_and_succeeds(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    data = tmp_path / "mrpc"
    data.mkdir()
    write_mrpc_like(data / "train.tsv", 80, seed=0)
    write_mrpc_like(data / "dev.tsv", 20, seed=1)
    env = {
        "TUNESERVE_DATA_DIR": str(tmp_path / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(tiny_model_dir.parent),
        "HF_HUB_OFFLINE": "1",
    }
    service = Service(env, tmp_path, embedded=True, issue_key=False)
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "demo",
            "--url",
            service.url,
            "--data",
            str(data),
            "--base-model",
            "tiny",
            "--epochs",
            "1",
        ],
        cwd=ROOT,
        env=service.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        service.start()
        output, _ = demo.communicate(timeout=240)
    finally:
        demo.kill()
        service.stop()
    assert demo.returncode == 0, output
    assert "job succeeded" in output
    assert "epoch 1" in output
