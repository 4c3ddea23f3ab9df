"""Chaos run: many short jobs while workers, Redis and PostgreSQL fail and users cancel.

Usage (needs redis-server and PostgreSQL's initdb/pg_ctl on this machine; the run starts its
own PostgreSQL and Redis on temporary ports and directories, and never touches the shared ones):

    HF_HUB_OFFLINE=1 python bench/chaos.py --jobs 100 --workers 3

A real API (`tuneserve api`) and 2-3 workers (`tuneserve worker`) train a tiny random model;
each step is slowed by TUNESERVE_FAULT_INJECTION_STEP_DELAY_SECONDS so that a job lasts a few
seconds. While jobs run, at random moments the bench:
- kills a worker's process group with SIGKILL (`--kills`) or stops a worker with SIGTERM
  (`--terms`, a warm shutdown), starting a replacement at once;
- restarts its Redis (`--redis-restarts`; no persistence: every message is lost) and its
  PostgreSQL (`--pg-restarts`, `pg_ctl stop -m immediate`, a crash, then start);
- cancels jobs through the API (`--cancels`), by turns one queued, one running and one whose
  training is over and whose model is being evaluated and saved ("saving").
One worker slot runs under libfaketime with its wall clock `--faketime` off (package `faketime`;
skipped with a note when it is missing): leases must not depend on the workers' clocks.

Checks, once every job has ended (the drain) and the leftover sweep has run, printed and
written to OUT/chaos.json: jobs; faults by kind; lost (not terminal after the drain); trained
twice at once (two `started` events of a job with no `retried` or terminal event between them);
stuck (a running job with no new event for `--stuck-seconds`); cancels honoured (every job with
a cancel request ended `cancelled`, unless its model committed first: `succeeded`); exactly one
model per succeeded job and none for the others (rows and folders); no orphan folder (a model
folder with no row, a job folder of an ended job) after the sweep; at most one metrics row per
job and epoch. Exits 1 on any violation.
"""

import argparse
import contextlib
import glob
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.service import TERMINAL, Service, free_port  # noqa: E402
from tests.support.tiny_model import build_tiny_model, sentiment_rows  # noqa: E402

CLOSES_AN_ATTEMPT = {"retried", *TERMINAL}
CANCEL_MOMENTS = ("queued", "running", "saving")
WORKER_FAULTS = ("kill9", "sigterm")


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


class OwnPostgres:
    """A PostgreSQL server of this run (initdb in a temp dir, its own port), run as the
    `postgres` user when this process is root; trust authentication on 127.0.0.1."""

    def __init__(self) -> None:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = candidates[-1] if candidates else shutil.which("initdb")
        if initdb is None:
            raise RuntimeError("initdb not found (install PostgreSQL's server package)")
        self.bin = Path(initdb).parent
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="tuneserve-chaos-pg-"))
        self.data = self.root / "data"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        subprocess.run([*prefix, *argv], check=True, cwd=self.root, stdout=subprocess.DEVNULL)

    def init(self) -> None:
        initdb = str(self.bin / "initdb")
        self._run(initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "postgres.log")
        pg_ctl = str(self.bin / "pg_ctl")
        self._run(pg_ctl, "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class OwnRedis:
    """A redis-server of this run on its own port, without persistence: a restart empties it."""

    def __init__(self, work: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found")
        self.port = free_port()
        self.argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        self.argv += ["--save", "", "--appendonly", "no", "--dir", str(work)]
        self.work = work
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.work / "redis.log").open("ab")
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self.up, 20, "redis-server")

    def up(self) -> bool:
        import socket

        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


def faketime_env(offset: str, library: str | None) -> tuple[dict[str, str], str]:
    """The environment that runs a process under libfaketime with its wall clock `offset` off
    (monotonic clocks left alone), or ({}, why not). A library is used only once a probe
    process under it has slept, waited and read a clock `offset` off: Debian 12's 0.9.10
    fails time.sleep with EINVAL when monotonic clocks are not faked, and hangs timed waits
    when they are. The PyPI package `libfaketime` vendors a build that passes."""
    candidates = [library] if library else []
    spec = importlib.util.find_spec("libfaketime")
    for folder in spec.submodule_search_locations or [] if spec else []:
        candidates += glob.glob(f"{folder}/vendor/libfaketime/src/libfaketime.so.1")
    candidates += sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not candidates:
        return {}, "no libfaketime (apt-get install faketime, or pip install libfaketime)"
    probe = "import threading, time; time.sleep(0.05); threading.Event().wait(0.05); "
    probe += "print(time.time())"
    failed = []
    for path in candidates:
        env = {"LD_PRELOAD": path, "FAKETIME": offset, "DONT_FAKE_MONOTONIC": "1"}
        try:
            run = subprocess.run(
                [sys.executable, "-c", probe],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=10,
            )
            skew = float(run.stdout) - time.time() if run.returncode == 0 else None
        except (subprocess.TimeoutExpired, ValueError):
            skew = None
        if skew is not None and abs(skew) > 1:
            return env, f"faked clock {offset} ({skew:+.0f} s) with {path}"
        failed.append(path)
    return {}, f"libfaketime fails the probe ({', '.join(failed)}); no faked-clock worker"


@dataclass
class Chaos:
    """The run's processes and what it did to them."""

    service: Service
    faketime: dict[str, str]
    counter: int = 0
    workers: dict[str, bool] = field(default_factory=dict)  # name -> runs under faketime
    stopping: list[subprocess.Popen[bytes]] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)

    def start_worker(self, faked: bool = False) -> None:
        self.counter += 1
        name = f"worker{self.counter}"
        env = dict(self.service.env, **(self.faketime if faked else {}))
        log = (self.service.log_dir / f"{name}.log").open("ab")
        self.service.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers[name] = faked
        if faked:
            self.faults["faketime_worker_starts"] += 1

    def training(self, engine: Engine) -> list[str]:
        """The workers that hold a running job's lease now (best effort: a lease owner reads
        `host:pid:…`, pid being the worker's pool process; [] when that does not parse)."""
        try:
            owners = rows(engine, "SELECT lease_owner FROM jobs WHERE status = 'running'")
        except SQLAlchemyError:
            return []
        parents = set()
        for (owner,) in owners:
            with contextlib.suppress(ValueError, IndexError, OSError):
                stat = Path(f"/proc/{int(str(owner).split(':')[1])}/stat").read_text()
                parents.add(int(stat.rsplit(")", 1)[1].split()[1]))
        return [n for n in self.workers if self.service.processes[n].pid in parents]

    def hit_worker(self, rng: random.Random, how: str, busy: list[str]) -> None:
        """SIGKILL a worker's process group, or SIGTERM the worker, preferring one that trains
        (`busy`); a replacement starts at once (a faked-clock one for a faked-clock one)."""
        name = rng.choice(busy or list(self.workers))
        if busy:
            self.faults[f"{how}_while_training"] += 1
        faked = self.workers.pop(name)
        process = self.service.processes[name]
        if how == "kill9":
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        else:
            process.send_signal(signal.SIGTERM)
            self.stopping.append(process)
        self.faults[how] += 1
        self.start_worker(faked)

    def reap_stopped(self, timeout: float = 60) -> None:
        for process in self.stopping:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.faults["sigterm_not_exited"] += 1
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)


def rows(engine: Engine, query: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(query)))


def job_states(engine: Engine) -> list[Any] | None:
    """Every job's state, or None while the database is unreachable (restarting)."""
    try:
        return rows(
            engine,
            "SELECT id, status, step, total_steps, cancel_requested, "
            "(SELECT max(seq) FROM job_events e WHERE e.job_id = jobs.id) AS last_seq FROM jobs",
        )
    except SQLAlchemyError:
        return None


def cancel(client: httpx.Client, job_id: str) -> int:
    """POST cancel, retrying while the database restarts; returns the final status code."""
    for _ in range(20):
        try:
            response = client.post(f"/v1/jobs/{job_id}/cancel")
        except httpx.HTTPError:
            time.sleep(0.5)
            continue
        if response.status_code != 503:
            return response.status_code
        time.sleep(0.5)
    return 503


def pick_cancel_target(states: list[Any], moment: str, rng: random.Random) -> Any | None:
    open_jobs = [s for s in states if not s.cancel_requested and s.status not in TERMINAL]
    if moment == "queued":
        found = [s for s in open_jobs if s.status == "queued"]
    elif moment == "saving":
        found = [
            s
            for s in open_jobs
            if s.status == "running" and s.total_steps and s.step >= s.total_steps
        ]
    else:
        found = [
            s
            for s in open_jobs
            if s.status == "running" and (not s.total_steps or s.step < s.total_steps)
        ]
    return rng.choice(found) if found else None


def check(engine: Engine, data_dir: Path, job_ids: list[str]) -> dict[str, Any]:
    """The invariants, from the database and the data directory."""
    jobs = {
        r.id: r
        for r in rows(engine, "SELECT id, status, attempts, cancel_requested, model_id FROM jobs")
    }
    models: dict[str, list[str]] = defaultdict(list)
    for row in rows(engine, "SELECT id, job_id FROM models"):
        models[row.job_id].append(row.id)
    events: dict[str, list[str]] = defaultdict(list)
    for row in rows(engine, "SELECT job_id, type FROM job_events ORDER BY job_id, seq"):
        events[row.job_id].append(row.type)
    duplicates = rows(
        engine,
        "SELECT job_id, epoch, count(*) FROM job_metrics GROUP BY 1, 2 HAVING count(*) > 1",
    )

    violations: dict[str, list[str]] = defaultdict(list)
    for job_id in job_ids:
        job = jobs[job_id]
        if job.status not in TERMINAL:
            violations["lost"].append(f"{job_id} is {job.status}")
        running = False
        for kind in events[job_id]:
            if kind == "started":
                if running:
                    violations["trained_twice_at_once"].append(job_id)
                    break
                running = True
            elif kind in CLOSES_AN_ATTEMPT:
                running = False
        if job.cancel_requested and job.status not in ("cancelled", "succeeded"):
            violations["cancel_not_honoured"].append(f"{job_id} ended {job.status}")
        expected = 1 if job.status == "succeeded" else 0
        if len(models[job_id]) != expected:
            violations["models_per_job"].append(f"{job_id} ({job.status}): {models[job_id]}")
        for model_id in models[job_id]:
            if not (data_dir / "models" / model_id / "config.json").is_file():
                violations["model_folder_missing"].append(f"{job_id}: {model_id}")
    owned = {model_id for ids in models.values() for model_id in ids}
    models_dir, jobs_dir = data_dir / "models", data_dir / "jobs"
    for path in sorted(models_dir.iterdir()) if models_dir.is_dir() else []:
        if path.name not in owned:
            violations["orphan_model_folder"].append(path.name)
    for path in sorted(jobs_dir.iterdir()) if jobs_dir.is_dir() else []:
        if path.name not in jobs or jobs[path.name].status in TERMINAL:
            violations["orphan_job_folder"].append(path.name)
    violations["duplicate_metrics_row"] += [str(tuple(row)) for row in duplicates]
    return {
        "statuses": dict(Counter(jobs[j].status for j in job_ids)),
        "attempts": sum(jobs[j].attempts for j in job_ids),
        "cancel_requested": sum(1 for j in job_ids if jobs[j].cancel_requested),
        "cancel_requested_but_succeeded": sum(
            1 for j in job_ids if jobs[j].cancel_requested and jobs[j].status == "succeeded"
        ),
        "violations": {kind: found for kind, found in violations.items() if found},
    }


@contextlib.contextmanager
def infrastructure(work: Path) -> Iterator[tuple[OwnPostgres, OwnRedis]]:
    pg = OwnPostgres()
    redis = OwnRedis(work)
    try:
        pg.init()
        pg.start()
        redis.start()
        yield pg, redis
    finally:
        redis.stop()
        pg.remove()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kills", type=int, default=20, help="worker SIGKILLs")
    parser.add_argument("--terms", type=int, default=10, help="worker SIGTERMs")
    parser.add_argument("--cancels", type=int, default=21, help="by turns queued/running/saving")
    parser.add_argument("--redis-restarts", type=int, default=3)
    parser.add_argument("--pg-restarts", type=int, default=1)
    parser.add_argument("--faketime", default="-90s", help="one worker's clock offset; '' = none")
    parser.add_argument("--libfaketime", help="path of libfaketime.so.1 (else found)")
    parser.add_argument("--seconds-between-faults", type=float, default=3.0)
    parser.add_argument("--step-delay", type=float, default=0.2, help="seconds added per step")
    parser.add_argument("--train-rows", type=int, default=40)
    parser.add_argument("--stuck-seconds", type=float, default=60)
    parser.add_argument("--sweep-grace", type=float, default=20, help="seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1800, help="for the whole run")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started_at = time.monotonic()
    deadline = started_at + args.timeout

    work = Path(tempfile.mkdtemp(prefix="tuneserve-chaos-"))
    faketime, note = faketime_env(args.faketime, args.libfaketime) if args.faketime else ({}, "")
    notes = [note] if note else []
    print(note, flush=True)
    tiny = build_tiny_model(work / "base-models" / "tiny")
    data_dir = work / "data"
    with infrastructure(work) as (pg, redis):
        env = {
            "TUNESERVE_DATA_DIR": str(data_dir),
            "TUNESERVE_BASE_MODELS_DIR": str(tiny.parent),
            "TUNESERVE_DATABASE_URL": pg.url,
            "TUNESERVE_BROKER_URL": redis.url,
            "TUNESERVE_QUEUE_NAME": "chaos",
            "TUNESERVE_HEARTBEAT_SECONDS": "0.5",
            "TUNESERVE_LEASE_SECONDS": "4",
            "TUNESERVE_REAPER_INTERVAL_SECONDS": "1",
            "TUNESERVE_REQUEUE_QUEUED_AFTER_SECONDS": "10",
            "TUNESERVE_SWEEP_INTERVAL_SECONDS": "2",
            "TUNESERVE_SWEEP_GRACE_SECONDS": str(args.sweep_grace),
            "TUNESERVE_MAX_ATTEMPTS": "50",  # kills are not the jobs' fault: let each finish
            "TUNESERVE_MAX_QUEUED_JOBS_PER_TENANT": str(args.jobs + 10),
            "TUNESERVE_FAULT_INJECTION_STEP_DELAY_SECONDS": str(args.step_delay),
            "HF_HUB_OFFLINE": "1",
        }
        for name in [name for name in os.environ if name.startswith("TUNESERVE_")]:
            del os.environ[name]  # the caller's settings must not reach the service
        service = Service(env, work, embedded=False)
        service.api_key = service.issue_key("chaos")
        chaos = Chaos(service, faketime)
        engine = create_engine(pg.url, pool_pre_ping=True)
        try:
            service.start_process("api", "api", "--port", str(service.port))
            service.wait_healthy()
            print(f"{time.monotonic() - started_at:6.1f}s API up", flush=True)
            for index in range(args.workers):
                chaos.start_worker(faked=bool(faketime) and index == 0)

            train = service.upload(sentiment_rows(args.train_rows))
            dev = service.upload(sentiment_rows(10, seed=1))
            job_ids = []
            for index in range(args.jobs):
                spec = {
                    "base_model": "tiny",
                    "dataset": {
                        "source": "files",
                        "train_file_id": train,
                        "validation_file_id": dev,
                    },
                    "text_column": "sentence",
                    "label_column": "label",
                    "hyperparameters": {
                        "num_train_epochs": 1 + index % 3,
                        "learning_rate": 5e-3,
                        "per_device_train_batch_size": 8,
                    },
                }
                job_ids.append(service.create_job(spec)["id"])

            plan = ["kill9"] * args.kills + ["sigterm"] * args.terms
            plan += ["redis"] * args.redis_restarts + ["postgres"] * args.pg_restarts
            rng.shuffle(plan)
            moments = [CANCEL_MOMENTS[i % len(CANCEL_MOMENTS)] for i in range(args.cancels)]
            cancels: Counter[str] = Counter()
            last_event: dict[str, tuple[int | None, float]] = {}
            stuck: set[str] = set()
            next_fault = time.monotonic() + rng.uniform(0.5, 1.5) * args.seconds_between_faults
            next_cancel = time.monotonic() + rng.uniform(0.2, 1.0) * args.seconds_between_faults
            moment_since = time.monotonic()
            saving_patience = 4 * args.seconds_between_faults
            print(f"{time.monotonic() - started_at:6.1f}s {args.jobs} jobs created", flush=True)
            with service.client() as client:
                while time.monotonic() < deadline:
                    states = job_states(engine)
                    if states is None:
                        time.sleep(0.5)
                        continue
                    now = time.monotonic()
                    for state in states:
                        seen = last_event.get(state.id)
                        if seen is None or seen[0] != state.last_seq or state.status != "running":
                            last_event[state.id] = (state.last_seq, now)
                        elif now - seen[1] > args.stuck_seconds:
                            stuck.add(state.id)
                    if all(s.status in TERMINAL for s in states):
                        break
                    busy = chaos.training(engine) if plan and now >= next_fault else []
                    # A worker fault waits a while for a worker that trains (workers take
                    # seconds to start: hitting only starting ones would test little).
                    patient = now < next_fault + 3 * args.seconds_between_faults
                    waits = bool(plan) and plan[-1] in WORKER_FAULTS and not busy and patient
                    if plan and now >= next_fault and not waits:
                        fault = plan.pop()
                        if fault in WORKER_FAULTS:
                            chaos.hit_worker(rng, fault, busy)
                        elif fault == "redis":
                            redis.stop()
                            time.sleep(1)
                            redis.start()
                            chaos.faults["redis_restart"] += 1
                        else:
                            pg.stop("immediate")
                            time.sleep(2)
                            pg.start()
                            chaos.faults["postgres_restart"] += 1
                        print(f"{now - started_at:6.1f}s {fault}", flush=True)
                        next_fault = now + rng.uniform(0.5, 1.5) * args.seconds_between_faults
                    if moments and now >= next_cancel:
                        moment = moments[-1]
                        target = pick_cancel_target(states, moment, rng)
                        # A saving moment is brief: look for one a while, then take a running job.
                        waited = now - moment_since
                        if target is None and moment == "saving" and waited > saving_patience:
                            target, moment = pick_cancel_target(states, "running", rng), "running"
                        if target is not None:
                            code = cancel(client, target.id)
                            cancels[f"{moment}:{code}"] += 1
                            print(f"{now - started_at:6.1f}s cancel {moment} -> {code}", flush=True)
                            moments.pop()
                            moment_since = now
                            next_cancel = now + rng.uniform(0.2, 1.0) * args.seconds_between_faults
                    time.sleep(0.1)
            drained_at = time.monotonic()
            # The sweep runs every 2 s in each process's reaper, on entries older than the grace.
            time.sleep(args.sweep_grace + 6)
            chaos.reap_stopped()
            report = check(engine, data_dir, job_ids)
        finally:
            service.stop()
            engine.dispose()
    report.update(
        {
            "jobs": len(job_ids),
            "workers": args.workers,
            "faults": dict(chaos.faults),
            "faults_not_done": dict(Counter(plan)),
            "cancels": dict(cancels),
            "cancels_not_done": dict(Counter(moments)),
            "stuck": sorted(stuck),
            "seconds": round(drained_at - started_at, 1),
            "notes": notes,
        }
    )
    if stuck:
        report["violations"]["stuck"] = sorted(stuck)
    violations = sum(len(found) for found in report["violations"].values())
    report["violation_count"] = violations
    print(json.dumps(report, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "chaos.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.keep or violations:
        print(f"work dir kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
