"""End to end through the `tuneserve` client commands only: upload, train, watch, show,
list, predict, cancel, and the errors a user sees."""

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.service import Service, free_port
from tests.support.tiny_model import sentiment_rows

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Service]:
    tmp_path = tmp_path_factory.mktemp("cli-client")
    env = {
        "TUNESERVE_HEARTBEAT_SECONDS": "0.5",
        "TUNESERVE_LEASE_SECONDS": "10",
        "TUNESERVE_REAPER_INTERVAL_SECONDS": "2",
        "HF_HUB_OFFLINE": "1",
        "TUNESERVE_DATA_DIR": str(tmp_path / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(tiny_model_dir.parent),
        "TUNESERVE_QUEUE_NAME": f"e2e-{tmp_path.name}-{uuid.uuid4().hex[:8]}",
    }
    service = Service(env, tmp_path, embedded=True)
    try:
        yield service.start()
    finally:
        service.stop()


def tuneserve(
    service: Service, *args: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    """A client command against the service."""
    return service.cli(*args, "--url", service.url, "--api-key", key or service.api_key)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def field(out: str, name: str) -> str:
    """The value of a `name  value` line of a command's output."""
    found = re.search(rf"^{re.escape(name)}\s+(.+)$", out, re.M)
    assert found, f"no {name!r} in:\n{out}"
    return found.group(1)


def test_train_watch_show_predict_through_the_cli(service: Service, tmp_path: Path) -> None:
    uploads = []
    for name, rows in (("train", sentiment_rows(240)), ("dev", sentiment_rows(60, seed=1))):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        out = ok(tuneserve(service, "files", "upload", str(path)))
        assert field(out, "rows") == str(len(rows))
        assert field(out, "columns") == "sentence, label"
        uploads.append(field(out, "id"))
    train, dev = uploads

    out = ok(
        tuneserve(
            service, "jobs", "create", "--base-model", "tiny", "--train", train,
            "--validation", dev, "--text-column", "sentence", "--label-column", "label",
            "--epochs", "2", "--learning-rate", "5e-3", "--seed", "1",
        )
    )  # fmt: skip
    job_id, status = out.split()
    assert job_id.startswith("job_") and status == "queued"

    # A second job from a spec file, cancelled while it waits behind the first.
    spec = {
        "base_model": "tiny",
        "dataset": {"source": "files", "train_file_id": train, "validation_file_id": dev},
        "text_column": "sentence",
        "label_column": "label",
        "hyperparameters": {"num_train_epochs": 1},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    created = json.loads(
        ok(tuneserve(service, "jobs", "create", "--spec", str(tmp_path / "spec.json"), "--json"))
    )
    assert created["spec"]["hyperparameters"]["num_train_epochs"] == 1
    assert ok(tuneserve(service, "jobs", "cancel", created["id"])).split()[0] == created["id"]

    watched = tuneserve(service, "jobs", "watch", job_id)
    out = ok(watched)
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/2", "2/2"], out
    assert all("eval_loss" in line and "accuracy" in line for line in epoch_lines)
    assert f"job {job_id} succeeded" in out
    assert "epoch 1/2" in watched.stderr and "step" in watched.stderr  # the tqdm bars
    model_id = out.splitlines()[-1].rsplit(" ", 1)[-1]
    assert model_id.startswith("mdl_"), out

    out = ok(tuneserve(service, "jobs", "show", job_id))
    assert field(out, "status") == "succeeded"
    assert field(out, "progress") == "epoch 2/2, step 60/60"
    assert field(out, "model") == model_id
    table = out[out.index("\nepoch ") + 1 :].splitlines()
    assert table[0].split() == [
        "epoch",
        "step",
        "train_loss",
        "eval_loss",
        "accuracy",
        "f1",
        "elapsed",
    ]
    assert [row.split()[:2] for row in table[1:]] == [["1", "30"], ["2", "60"]]

    out = ok(tuneserve(service, "jobs", "list"))
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["id", "status", "base"]
    assert any(line.split()[:4] == [job_id, "succeeded", "tiny", "2/2"] for line in lines), out
    assert any(line.split()[:2] == [created["id"], "cancelled"] for line in lines), out
    cancelled = ok(tuneserve(service, "jobs", "list", "--status", "cancelled"))
    assert created["id"] in cancelled and job_id not in cancelled

    watched = tuneserve(service, "jobs", "watch", created["id"])
    assert watched.returncode == 1 and f"job {created['id']} cancelled" in watched.stdout

    out = ok(tuneserve(service, "models", "list"))
    assert re.search(
        rf"^{model_id}\s+{job_id}\s+tiny\s+neg, pos\s+accuracy", out.splitlines()[1]
    ), out

    out = ok(tuneserve(service, "predict", model_id, "good movie"))
    assert field(out, "label") in ("neg", "pos")
    assert re.search(r"^\s+pos\s+0\.\d{4}$", out, re.M), out

    refused = tuneserve(service, "jobs", "cancel", job_id)
    assert refused.returncode == 1
    assert "job_not_cancellable:" in refused.stderr and "Traceback" not in refused.stderr


def test_a_wrong_key_is_refused_readably(service: Service) -> None:
    result = tuneserve(service, "jobs", "list", key="ts_not-a-real-key")
    assert result.returncode == 1
    assert "invalid_api_key: The API key is unknown" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_server_is_reported_readably(service: Service) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = service.cli("models", "list", "--url", url, "--api-key", "k")
    assert result.returncode == 1
    assert f"cannot reach tuneserve at {url}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_headerless_multi_label_file_through_the_cli(service: Service, tmp_path: Path) -> None:
    """GoEmotions' shape: no header line, label ids joined by ',', names in a list file."""
    rows = sentiment_rows(120)
    lines = [
        f"{row['sentence']}\t{'0,2' if row['label'] == 'pos' else '1'}\tc{i}\n"
        for i, row in enumerate(rows)
    ]
    (tmp_path / "train.tsv").write_text("".join(lines))
    (tmp_path / "names.txt").write_text("positive\nnegative\nupbeat")
    out = ok(
        tuneserve(
            service, "files", "upload", str(tmp_path / "train.tsv"), "--no-header",
            "--column-names", "text,labels,id",
        )
    )  # fmt: skip
    assert field(out, "columns") == "text, labels, id"
    train = field(out, "id")
    out = ok(
        tuneserve(
            service, "jobs", "create", "--base-model", "tiny", "--train", train,
            "--text-column", "text", "--label-column", "labels", "--label-delimiter", ",",
            "--label-names", str(tmp_path / "names.txt"), "--threshold", "0.4",
            "--metric-for-best-model", "f1_micro", "--epochs", "1",
        )
    )  # fmt: skip
    job_id = out.split()[0]
    out = ok(tuneserve(service, "jobs", "watch", job_id))
    assert f"job {job_id} succeeded" in out and "f1_micro" in out, out
    model_id = out.splitlines()[-1].rsplit(" ", 1)[-1]
    job = json.loads(ok(tuneserve(service, "jobs", "show", job_id, "--json")))["job"]
    assert job["data"]["task"] == "multi_label_classification"
    assert job["data"]["validation"]["source"] == "held_out"  # no --validation
    out = ok(tuneserve(service, "predict", model_id, "a great movie"))
    assert out.splitlines()[0].split()[0] == "labels"
    assert {line.split()[0] for line in out.splitlines()[1:]} == {"positive", "negative", "upbeat"}
    # --column-names without --no-header is a client-side mistake, said plainly.
    refused = tuneserve(
        service, "files", "upload", str(tmp_path / "train.tsv"), "--column-names", "a,b,c"
    )
    assert refused.returncode != 0 and "--no-header" in refused.stderr
    assert "Traceback" not in refused.stderr
