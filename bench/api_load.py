"""API under load: job creation and job status/metrics polling, on SQLite and on PostgreSQL.

    HF_HUB_OFFLINE=1 python bench/api_load.py --seconds 20 --concurrency 16 --out docs

For each backend this script starts the real API (`tuneserve api`, one uvicorn process) and
no worker, so every job it creates stays queued: SQLite is the embedded default (database and
broker in a temp data dir); PostgreSQL is a fresh database (created here, dropped at the end)
with Redis (db 14, flushed before and after) as the broker. The schema is migrated with
`tuneserve migrate`, a key is issued straight into the database, one small JSONL file is
uploaded and a few jobs are created before the load. The per-tenant queued-jobs limit is
raised so that creation is never answered 429.

The load generator runs in this process, apart from the API: asyncio with one shared
httpx.AsyncClient and N concurrent clients (one keep-alive connection each), each looping for
a fixed time after a short warm-up, picking every request at random (fixed seed): 20% POST
/v1/jobs (job creation), 40% GET /v1/jobs/{id} (status) and 40% GET /v1/jobs/{id}/metrics,
both on a random job created before. Every request is expected to succeed; a non-2xx answer
or an exception counts as an error. Reports requests/s, p50 and p99 latency and errors per
backend and operation, checks that the database holds one job per creation answered, writes
api-load.json and exits non-zero on any error. Load generator and API share the machine.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.http_load import percentile  # noqa: E402
from tests.support.postgres import fresh_database  # noqa: E402
from tests.support.service import Service  # noqa: E402
from tests.support.specs import tiny_spec  # noqa: E402
from tests.support.tiny_model import build_tiny_model, sentiment_rows  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/14"
BACKENDS = ("sqlite", "postgres")
OPERATIONS = ("create", "status", "metrics")
MIX = {"create": 0.2, "status": 0.4, "metrics": 0.4}
SEED = 0
WARMUP_SECONDS = 3.0
SEED_JOBS = 20


@dataclass
class Sample:
    operation: str
    seconds: float
    ok: bool


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    elapsed: float = 0.0
    failures: list[str] = field(default_factory=list)  # the first few errors, for the report


@contextmanager
def flushed_redis(url: str) -> Iterator[str]:
    """A Redis database emptied before and after."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        try:
            yield url
        finally:
            client.flushdb()
    finally:
        client.close()


@contextmanager
def running_api(env: dict[str, str], log_dir: Path) -> Iterator[Service]:
    """`tuneserve migrate`, a key of tenant 'bench', then `tuneserve api` alone; always stopped."""
    log_dir.mkdir(parents=True, exist_ok=True)
    service = Service(env, log_dir, embedded=False, issue_key=False)
    migrated = service.cli("migrate")
    if migrated.returncode != 0:
        raise SystemExit(f"tuneserve migrate failed:\n{migrated.stdout}{migrated.stderr}")
    service.api_key = service.issue_key("bench")
    try:
        service.start_process("api", "api", "--port", str(service.port))
        service.wait_healthy()
        yield service
    finally:
        service.stop()


@contextmanager
def backend_env(backend: str, work: Path) -> Iterator[dict[str, str]]:
    """The API's environment for a backend, with the backend's stores made and cleaned up."""
    env = {
        "TUNESERVE_DATA_DIR": str(work / backend / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(work / "base-models"),
        "TUNESERVE_MAX_QUEUED_JOBS_PER_TENANT": "1000000",
        "HF_HUB_OFFLINE": "1",
    }
    if backend == "sqlite":
        yield env
        return
    with fresh_database("tuneserve_load_") as database_url, flushed_redis(REDIS_URL) as broker_url:
        yield {
            **env,
            "TUNESERVE_DATABASE_URL": database_url,
            "TUNESERVE_BROKER_URL": broker_url,
        }


def count_jobs(service: Service) -> int:
    engine = create_engine(service.settings().sqlalchemy_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM jobs")).scalar_one())
    finally:
        engine.dispose()


async def load(
    service: Service,
    spec: dict[str, Any],
    job_ids: list[str],
    concurrency: int,
    seconds: float,
    seed: int,
) -> Run:
    """N clients, each sending one request after another until the time is up."""
    run = Run()
    operations = list(MIX)
    weights = [MIX[op] for op in operations]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {service.api_key}"}
    stop_at = time.perf_counter() + seconds
    async with httpx.AsyncClient(
        base_url=service.url, timeout=60, limits=limits, headers=headers
    ) as client:

        async def request(operation: str, rng: random.Random) -> httpx.Response:
            if operation == "create":
                return await client.post("/v1/jobs", json=spec)
            job_id = rng.choice(job_ids)
            suffix = "/metrics" if operation == "metrics" else ""
            return await client.get(f"/v1/jobs/{job_id}{suffix}")

        async def user(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            while time.perf_counter() < stop_at:
                operation = rng.choices(operations, weights)[0]
                response: httpx.Response | None = None
                started = time.perf_counter()
                try:
                    response = await request(operation, rng)
                    ok = response.is_success
                    problem = f"{response.status_code} {response.text[:300]}"
                except Exception as exc:
                    ok, problem = False, f"{type(exc).__name__}: {exc!r}"
                run.samples.append(Sample(operation, time.perf_counter() - started, ok))
                if ok and operation == "create" and response is not None:
                    job_ids.append(str(response.json()["id"]))
                elif not ok and len(run.failures) < 10:
                    run.failures.append(f"{operation}: {problem}")

        began = time.perf_counter()
        await asyncio.gather(*(user(i) for i in range(concurrency)))
        run.elapsed = time.perf_counter() - began
    return run


def summarize(run: Run) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for operation in (*OPERATIONS, "all"):
        samples = [s for s in run.samples if operation in ("all", s.operation)]
        latencies = sorted(s.seconds for s in samples)
        if not latencies:
            continue
        rows[operation] = {
            "requests": len(samples),
            "errors": sum(not s.ok for s in samples),
            "requests_per_second": len(samples) / run.elapsed,
            "p50_ms": percentile(latencies, 0.50) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "max_ms": latencies[-1] * 1000,
        }
    return rows


def bench_backend(
    backend: str, work: Path, args: argparse.Namespace
) -> tuple[dict[str, dict[str, float]], list[str], int]:
    """(rows per operation, first errors, jobs in the database minus jobs created)."""
    with (
        backend_env(backend, work) as env,
        running_api(env, work / backend / "logs") as service,
    ):
        file_id = service.upload(sentiment_rows(16))
        spec = tiny_spec(file_id, file_id)
        job_ids = [service.create_job(spec)["id"] for _ in range(SEED_JOBS)]
        warm = asyncio.run(load(service, spec, job_ids, args.concurrency, WARMUP_SECONDS, SEED))
        run = asyncio.run(load(service, spec, job_ids, args.concurrency, args.seconds, SEED + 1))
        created = sum(s.ok and s.operation == "create" for s in (*warm.samples, *run.samples))
        missing = SEED_JOBS + created - count_jobs(service)
        failures = [f"warm-up {f}" for f in warm.failures] + run.failures
        if failures:
            print(f"{backend}: errors; API log:\n{service.logs()}", flush=True)
        return summarize(run), failures, missing


def table(results: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    lines = [
        "| backend | operation | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for backend, rows in results.items():
        for operation, row in rows.items():
            lines.append(
                f"| {backend} | {operation} | {row['requests_per_second']:.1f} | "
                f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {int(row['errors'])} |"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="load time per backend")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    args = parser.parse_args()
    # The service is configured here alone: a TUNESERVE_* variable of the caller (a database
    # URL, say) would otherwise reach the API processes.
    for name in [name for name in os.environ if name.startswith("TUNESERVE_")]:
        del os.environ[name]

    work = Path(tempfile.mkdtemp(prefix="tuneserve-api-load-"))
    results: dict[str, dict[str, dict[str, float]]] = {}
    failures: dict[str, list[str]] = {}
    missing_jobs: dict[str, int] = {}
    try:
        build_tiny_model(work / "base-models" / "tiny")
        for backend in args.backends:
            rows, failures[backend], missing_jobs[backend] = bench_backend(backend, work, args)
            results[backend] = rows
            print("\n".join(table({backend: rows})), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lines = table(results)
    print(
        f"\n{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; "
        f"{args.concurrency} clients, {args.seconds:g} s per backend after {WARMUP_SECONDS:g} s "
        "of warm-up; load generator on the same machine.\n"
    )
    print("\n".join(lines))
    for backend, found in failures.items():
        for failure in found:
            print(f"{backend} error: {failure}")
    for backend, missing in missing_jobs.items():
        if missing:
            print(f"{backend}: {missing} jobs answered 201 are not in the database (or extra)")

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "api-load.json").write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
                "seconds": args.seconds,
                "warmup_seconds": WARMUP_SECONDS,
                "concurrency": args.concurrency,
                "mix": MIX,
                "seed": SEED,
                "results": results,
                "errors": failures,
                "jobs_missing_from_database": missing_jobs,
            },
            indent=2,
        )
        + "\n"
    )
    # Warm-up errors count too: `failures` holds the first few of the warm-up and of the load.
    return 1 if any(failures.values()) or any(missing_jobs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
