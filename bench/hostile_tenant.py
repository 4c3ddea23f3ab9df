"""A hostile tenant against a polite one, on one API process: does B still get served?

    HF_HUB_OFFLINE=1 python bench/hostile_tenant.py --seconds 10 --rounds 2 --streams 50

The script starts the real API (`tuneserve api`, SQLite, no worker) and gives two tenants a
served model each (the tiny test model, tests/support/tiny_model.py: a row and a folder, as the
worker leaves them). Tenant B, the polite one, runs two clients on keep-alive connections: a
one-input predict and a GET /v1/jobs, each one request after another with a short pause. They
run in windows of `--seconds`, on the idle service and while tenant A attacks it, in turn for
`--rounds` rounds (on a shared machine, both phases then see its other load alike):

- predict flood: `--flooders` keep-alive connections sending requests of 256 long inputs as
  fast as they are answered, and `--hang-ups-per-second` clients that send one such request
  and close the connection before the answer;
- event streams: `--streams` connections held open on GET /v1/jobs/{id}/events/stream of a
  job of A's (reconnecting when one is refused or ends);
- uploads: one client after another posting a `--upload-mib` file of tiny CSV rows.

All clients speak HTTP/1.1 over raw asyncio streams (as bench/http_load.py), from this process;
client and server share the machine. Reported: B's latencies (p50, p99, max) and errors and
timeouts per phase, the ratio of hostile to idle p50 (target: at most 3x, and no error and no
timeout for B), what A's requests were answered, and the API process's resident memory
(sampled every 0.1 s; its peak per phase). Exits non-zero when B saw an error or a timeout.
"""

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.http_load import percentile  # noqa: E402
from tests.support.predict_tenants import (  # noqa: E402
    Connection,
    encode_request,
    hang_up,
    long_inputs,
    read_answer,
    register_model,
)
from tests.support.service import Service  # noqa: E402
from tests.support.tiny_model import build_tiny_model  # noqa: E402

B_TIMEOUT_SECONDS = 10.0


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class MemorySampler:
    """Peak resident memory of a process between `mark`s, sampled on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            self.peak = max(self.peak, rss_mib(self.pid))

    def mark(self) -> float:
        """The peak since the last mark; starts a new one."""
        peak, self.peak = max(self.peak, rss_mib(self.pid)), 0.0
        return peak


def add_running_job(database_url: str, tenant: str) -> str:
    """A running job of `tenant` (its event stream stays open)."""
    from sqlalchemy.orm import Session

    from app.auth.repository import TenantRepository
    from app.core.db import build_engine
    from app.tables import JobStatus
    from tests.support.rows import job_row
    from tests.support.specs import tiny_spec

    engine = build_engine(database_url)
    try:
        with Session(engine) as session:
            owner = TenantRepository(session).get_by_name(tenant)
            assert owner is not None
            job = job_row(owner.id, JobStatus.running)
            job.spec = tiny_spec("file_train", "file_validation")
            session.add(job)
            session.commit()
            return job.id
    finally:
        engine.dispose()


async def polite_client(
    port: int, request: bytes, stop_at: float, pause: float, out: dict[str, Any]
) -> None:
    """One request after another on a keep-alive connection; latencies, errors, timeouts."""
    connection = Connection(port)
    latencies: list[float] = out.setdefault("latencies", [])
    try:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                answer = await asyncio.wait_for(connection.send(request), B_TIMEOUT_SECONDS)
            except TimeoutError:
                out["timeouts"] = out.get("timeouts", 0) + 1
                connection.close()
                continue
            except (OSError, asyncio.IncompleteReadError) as exc:
                out.setdefault("failures", []).append(repr(exc))
                out["errors"] = out.get("errors", 0) + 1
                connection.close()
                continue
            latencies.append(time.perf_counter() - started)
            if answer.status != 200:
                out["errors"] = out.get("errors", 0) + 1
                out.setdefault("failures", []).append(f"{answer.status} {answer.body[:200]!r}")
            await asyncio.sleep(pause)
    finally:
        connection.close()


async def tenant_b(
    port: int, requests: dict[str, bytes], seconds: float, pause: float
) -> dict[str, dict[str, Any]]:
    stop_at = time.monotonic() + seconds
    results: dict[str, dict[str, Any]] = {name: {} for name in requests}
    await asyncio.gather(
        *(polite_client(port, r, stop_at, pause, results[n]) for n, r in requests.items())
    )
    return results


async def flooder(port: int, request: bytes, stop_at: float, answers: Counter[str]) -> None:
    connection = Connection(port)
    try:
        while time.monotonic() < stop_at:
            try:
                answers[str((await connection.send(request)).status)] += 1
            except (OSError, asyncio.IncompleteReadError):
                answers["closed"] += 1
                connection.close()
    finally:
        connection.close()


async def hang_ups(port: int, request: bytes, stop_at: float, rate: float, sent: list[int]) -> None:
    tasks = []
    while time.monotonic() < stop_at:
        tasks.append(asyncio.ensure_future(hang_up(port, request, after_seconds=0.2)))
        sent[0] += 1
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*tasks, return_exceptions=True)


async def stream_holder(port: int, request: bytes, stop_at: float, answers: Counter[str]) -> None:
    """Hold an event stream open, reading what comes; reconnect when it is refused or ends."""
    while time.monotonic() < stop_at:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            answers["connect_failed"] += 1
            await asyncio.sleep(0.5)
            continue
        try:
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            answers[head[9:12].decode()] += 1
            while time.monotonic() < stop_at:
                try:
                    if not await asyncio.wait_for(reader.read(65536), 1.0):
                        break  # the server ended it
                except TimeoutError:
                    continue
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            answers["closed"] += 1
        finally:
            writer.close()
        await asyncio.sleep(0.5)


async def uploader(
    port: int, key: str, mib: int, stop_at: float, answers: Counter[str], sent_mib: list[float]
) -> None:
    """Post a file of `mib` MiB of tiny CSV rows, one upload after another; each stops when
    the server answers."""
    boundary = "hostile-tenant-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="tiny.csv"\r\n'
        "Content-Type: text/csv\r\n\r\ntext,label\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    chunk = b"a,0\n" * (1 << 18)  # 1 MiB
    length = len(head) + mib * len(chunk) + len(tail)
    request_head = (
        f"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()
    while time.monotonic() < stop_at:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answer = asyncio.ensure_future(read_answer(reader))
        try:
            writer.write(request_head + head)
            for _ in range(mib):
                if answer.done() or time.monotonic() >= stop_at:
                    break
                writer.write(chunk)
                await writer.drain()
                sent_mib[0] += 1
            else:
                writer.write(tail)
            done, _ = await asyncio.wait({answer}, timeout=max(1.0, stop_at - time.monotonic()))
            if answer in done and answer.exception() is None:
                answers[str(answer.result().status)] += 1
            else:
                answers["no_answer"] += 1
        except OSError:
            answers["closed"] += 1
        finally:
            answer.cancel()
            writer.close()


async def hostile(
    port: int, args: argparse.Namespace, b_requests: dict[str, bytes], a: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    stop_at = time.monotonic() + args.seconds + 2
    flood = [
        encode_request(
            "POST",
            port,
            f"/v1/models/{a['model']}/predict",
            a["key"],
            {"inputs": long_inputs(256, args.chars, salt=i)},
        )
        for i in range(8)
    ]
    stream = (
        f"GET /v1/jobs/{a['job']}/events/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {a['key']}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    predict_answers: Counter[str] = Counter()
    stream_answers: Counter[str] = Counter()
    upload_answers: Counter[str] = Counter()
    hung_up, uploaded = [0], [0.0]
    attack = [
        *(flooder(port, flood[i % 8], stop_at, predict_answers) for i in range(args.flooders)),
        *(stream_holder(port, stream, stop_at, stream_answers) for _ in range(args.streams)),
    ]
    if args.hang_ups_per_second > 0:
        attack.append(hang_ups(port, flood[0], stop_at, args.hang_ups_per_second, hung_up))
    if args.upload_mib > 0:
        attack.append(uploader(port, a["key"], args.upload_mib, stop_at, upload_answers, uploaded))
    attack_tasks = [asyncio.ensure_future(task) for task in attack]
    await asyncio.sleep(2)  # the attack under way before B is measured
    polite = await tenant_b(port, b_requests, args.seconds, args.pause)
    await asyncio.gather(*attack_tasks)
    return polite, {
        "predict_flood_answers": dict(predict_answers),
        "predict_hang_ups": hung_up[0],
        "stream_answers": dict(stream_answers),
        "upload_answers": dict(upload_answers),
        "upload_mib_sent": uploaded[0],
    }


def merge(into: dict[str, dict[str, Any]], more: dict[str, dict[str, Any]]) -> None:
    """Add one window's results of B's clients to those of earlier windows."""
    for name, result in more.items():
        target = into[name]
        target.setdefault("latencies", []).extend(result.get("latencies", []))
        target.setdefault("failures", []).extend(result.get("failures", []))
        for count in ("errors", "timeouts"):
            target[count] = target.get(count, 0) + result.get(count, 0)


def summary(result: dict[str, Any]) -> dict[str, Any]:
    latencies = sorted(result.get("latencies", []))
    return {
        "requests": len(latencies),
        "errors": result.get("errors", 0),
        "timeouts": result.get("timeouts", 0),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2) if latencies else None,
        "max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
        "failures": result.get("failures", [])[:3],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each window")
    parser.add_argument("--rounds", type=int, default=2, help="idle and attack windows, in turn")
    parser.add_argument("--flooders", type=int, default=4)
    parser.add_argument("--hang-ups-per-second", type=float, default=10.0)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--upload-mib", type=int, default=200)
    parser.add_argument("--chars", type=int, default=2000, help="characters per flood input")
    parser.add_argument("--pause", type=float, default=0.02, help="B's pause between requests")
    parser.add_argument("--out", type=Path, help="write hostile-tenant.json here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp_name:
        tmp = Path(tmp_name)
        tiny = build_tiny_model(tmp / "base" / "tiny")
        env = {
            "TUNESERVE_DATA_DIR": str(tmp / "data"),
            "TUNESERVE_BROKER_URL": f"sqla+sqlite:///{tmp / 'broker.db'}",
            "TUNESERVE_BASE_MODELS_DIR": str(tiny.parent),
            "TUNESERVE_QUEUE_NAME": "hostile",
            "HF_HUB_OFFLINE": "1",
        }
        service = Service(env, tmp, embedded=False, issue_key=False)
        service.start_process("api", "api", "--port", str(service.port))
        try:
            service.wait_healthy()
            settings = service.settings()
            url = settings.sqlalchemy_url
            model_a, key_a = register_model(url, settings.models_dir, "tenant-a", tiny)
            model_b, key_b = register_model(url, settings.models_dir, "tenant-b", tiny)
            a = {"model": model_a, "key": key_a, "job": add_running_job(url, "tenant-a")}
            port = service.port
            b_requests = {
                "predict": encode_request(
                    "POST", port, f"/v1/models/{model_b}/predict", key_b, {"inputs": ["good"]}
                ),
                "list_jobs": encode_request("GET", port, "/v1/jobs", key_b),
            }
            memory = MemorySampler(service.processes["api"].pid)
            asyncio.run(tenant_b(port, b_requests, 2, args.pause))  # warm: model loaded
            memory.mark()
            idle: dict[str, dict[str, Any]] = {name: {} for name in b_requests}
            polite: dict[str, dict[str, Any]] = {name: {} for name in b_requests}
            attacks: list[dict[str, Any]] = []
            idle_rss = hostile_rss = 0.0
            for _ in range(args.rounds):  # alternated, so a busy machine weighs on both alike
                merge(idle, asyncio.run(tenant_b(port, b_requests, args.seconds, args.pause)))
                idle_rss = max(idle_rss, memory.mark())
                during, attack = asyncio.run(hostile(port, args, b_requests, a))
                merge(polite, during)
                attacks.append(attack)
                hostile_rss = max(hostile_rss, memory.mark())
            peak_rss = rss_mib(memory.pid, "VmHWM")
            memory.stop.set()
            alive = service.processes["api"].poll() is None
        finally:
            service.stop()

    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "idle": {name: summary(result) for name, result in idle.items()},
        "hostile": {name: summary(result) for name, result in polite.items()},
        "attack": attacks,
        "api_rss_mib": {
            "idle_peak": round(idle_rss, 1),
            "hostile_peak": round(hostile_rss, 1),
            "process_peak": round(peak_rss, 1),
        },
        "api_alive": alive,
    }
    ok = alive
    for name in b_requests:
        before, during = report["idle"][name], report["hostile"][name]
        ratio = during["p50_ms"] / before["p50_ms"] if during["p50_ms"] else None
        report["hostile"][name]["p50_vs_idle"] = round(ratio, 2) if ratio else None
        ok = ok and not during["errors"] and not during["timeouts"] and bool(during["requests"])
    print(json.dumps(report, indent=2))
    print(
        "\n| B's request | idle p50 / p99 ms | under attack p50 / p99 / max ms | p50 ratio | "
        "errors | timeouts |\n|---|---|---|---|---|---|"
    )
    for name in b_requests:
        i, h = report["idle"][name], report["hostile"][name]
        print(
            f"| {name} | {i['p50_ms']} / {i['p99_ms']} | {h['p50_ms']} / {h['p99_ms']} / "
            f"{h['max_ms']} | {h['p50_vs_idle']}x | {h['errors']} | {h['timeouts']} |"
        )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "hostile-tenant.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
