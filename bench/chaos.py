"""Chaos run: many short jobs while workers are killed (-9) and stopped (SIGTERM) at random.

Usage (PostgreSQL and Redis on localhost, as in the test suite):

    python bench/chaos.py --jobs 40 --workers 2 --seconds-between-faults 4

Checks, at the end: every job is terminal; exactly one model per succeeded job and none for
the others; no job was trained by two workers at once (claim/end intervals from the worker
logs, a killed worker's interval ending at its kill); at most one metrics row per job and epoch.
"""

import argparse
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.service import TERMINAL, Service  # noqa: E402
from tests.support.tiny_model import build_tiny_model, sentiment_rows  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LINE = re.compile(
    r"^(\S+ \S+) INFO worker\.runner (claimed|ended) job (\S+) as (\S+?)(?: \(attempt \d+\)|: \S+)$"
)


def parse_time(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds-between-faults", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    work = Path(tempfile.mkdtemp(prefix="tuneserve-chaos-"))
    tiny = build_tiny_model(work / "base-models" / "tiny")
    database = f"tuneserve_chaos_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    db_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{database}"
    env = {
        "TUNESERVE_DATA_DIR": str(work / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(tiny.parent),
        "TUNESERVE_DATABASE_URL": db_url,
        "TUNESERVE_BROKER_URL": "redis://127.0.0.1:6379/14",
        "TUNESERVE_QUEUE_NAME": f"chaos-{uuid.uuid4().hex[:8]}",
        "TUNESERVE_HEARTBEAT_SECONDS": "0.5",
        "TUNESERVE_LEASE_SECONDS": "4",
        "TUNESERVE_REAPER_INTERVAL_SECONDS": "1",
        "TUNESERVE_REQUEUE_QUEUED_AFTER_SECONDS": "30",
        "TUNESERVE_MAX_ATTEMPTS": "20",  # kills are not the job's fault; let each job finish
        "TUNESERVE_FAULT_INJECTION_STEP_DELAY_SECONDS": "0.02",
        "HF_HUB_OFFLINE": "1",
    }
    service = Service(env, work, embedded=False)
    service.start_process("api", "api", "--port", str(service.port))
    service.wait_healthy()
    counter = 0
    workers: dict[str, float | None] = {}  # process name -> kill time (None while alive)

    def start_worker() -> None:
        nonlocal counter
        counter += 1
        name = f"worker{counter}"
        service.start_worker(name)
        workers[name] = None

    for _ in range(args.workers):
        start_worker()

    train = service.upload(sentiment_rows(120))
    dev = service.upload(sentiment_rows(20, seed=1))
    job_ids = []
    for index in range(args.jobs):
        spec = {
            "base_model": "tiny",
            "dataset": {"source": "files", "train_file_id": train, "validation_file_id": dev},
            "text_column": "sentence",
            "label_column": "label",
            "hyperparameters": {"num_train_epochs": 2 + index % 3, "learning_rate": 5e-3},
        }
        job_ids.append(service.create_job(spec)["id"])

    kills = terms = restarts = 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        statuses = [service.job(job_id)["status"] for job_id in job_ids]
        if all(status in TERMINAL for status in statuses):
            break
        time.sleep(rng.uniform(0.5, 2) * args.seconds_between_faults)
        alive = [n for n, killed in workers.items() if killed is None]
        victim = rng.choice(alive)
        process = service.processes[victim]
        if rng.random() < 0.6:
            os.killpg(process.pid, signal.SIGKILL)
            kills += 1
        else:
            process.send_signal(signal.SIGTERM)
            terms += 1
        try:
            process.wait(timeout=60)
        except Exception:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        workers[victim] = time.time()
        start_worker()
        restarts += 1

    # Let the last workers finish what is left, then stop everything.
    for job_id in job_ids:
        service.wait_for(job_id, timeout=max(30.0, deadline - time.monotonic()))
    service.stop()

    violations: list[str] = []
    engine = create_engine(db_url)
    with engine.connect() as conn:
        jobs = {r.id: r for r in conn.execute(text("SELECT id, status, attempts FROM jobs"))}
        models = defaultdict(int)
        for row in conn.execute(text("SELECT job_id FROM models")):
            models[row.job_id] += 1
        duplicates = conn.execute(
            text(
                "SELECT job_id, epoch, count(*) c FROM job_metrics GROUP BY 1, 2 HAVING count(*) > 1"
            )
        ).all()
    engine.dispose()
    for job_id in job_ids:
        status = jobs[job_id].status
        if status not in TERMINAL:
            violations.append(f"{job_id} ended {status}")
        expected = 1 if status == "succeeded" else 0
        if models[job_id] != expected:
            violations.append(f"{job_id} ({status}) has {models[job_id]} models")
    violations += [f"duplicate metrics row {row}" for row in duplicates]

    intervals: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for name, killed_at in workers.items():
        open_claims: dict[tuple[str, str], float] = {}
        for line in (work / f"{name}.log").read_text(errors="replace").splitlines():
            match = LINE.match(line)
            if not match:
                continue
            stamp, kind, job_id, owner = match.groups()
            if kind == "claimed":
                open_claims[(job_id, owner)] = parse_time(stamp)
            elif (job_id, owner) in open_claims:
                start = open_claims.pop((job_id, owner))
                intervals[job_id].append((start, parse_time(stamp), owner))
        for (job_id, owner), start in open_claims.items():
            intervals[job_id].append((start, killed_at or time.time(), owner))
    for job_id, spans in intervals.items():
        spans.sort()
        for (_, end, owner), (next_start, _, next_owner) in zip(spans, spans[1:], strict=False):
            if next_start < end:
                violations.append(f"{job_id} trained by {owner} and {next_owner} at once")

    succeeded = sum(1 for j in job_ids if jobs[j].status == "succeeded")
    report = {
        "jobs": len(job_ids),
        "succeeded": succeeded,
        "attempts": sum(jobs[j].attempts for j in job_ids),
        "sigkills": kills,
        "sigterms": terms,
        "worker_restarts": restarts,
        "violations": len(violations),
    }
    print(json.dumps(report))
    for violation in violations:
        print("VIOLATION:", violation)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
