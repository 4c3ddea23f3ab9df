"""What open event streams cost the API process: N streams on one queued job, for N in --streams.

    HF_HUB_OFFLINE=1 python bench/stream_watchers.py --streams 1 500 --seconds 10

Starts the real API (`tuneserve api`, SQLite, no worker, so the job stays queued), opens N
streams on GET /v1/jobs/{id}/events/stream over raw asyncio connections (from this process),
waits until each has its first event, then samples the API process for `--seconds`: its CPU
(user + system, as % of one core) and its resident memory at the end. Each N starts a fresh API
process, so the figures do not mix.
"""

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.service import Service  # noqa: E402
from tests.support.specs import tiny_spec  # noqa: E402
from tests.support.tiny_model import build_tiny_model, sentiment_rows  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def open_stream(port: int, path: str, key: str) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"stream refused: {status!r}")
    while b"event: queued" not in await reader.readline():
        pass
    asyncio.get_running_loop().create_task(drain(reader))
    return writer


async def drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


async def measure(service: Service, job_id: str, streams: int, seconds: float) -> dict[str, float]:
    pid = service.processes["api"].pid
    path = f"/v1/jobs/{job_id}/events/stream"
    writers = []
    for start in range(0, streams, 50):  # in waves, so the accept backlog never overflows
        batch = min(50, streams - start)
        writers += await asyncio.gather(
            *(open_stream(service.port, path, service.api_key) for _ in range(batch))
        )
    await asyncio.sleep(1)  # let the openings settle
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0) * 100
    result = {"streams": streams, "api_cpu_percent": round(cpu, 1), "api_rss_mib": rss_mib(pid)}
    for writer in writers:
        writer.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 500])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        tiny = build_tiny_model(base / "base-models" / "tiny")
        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus")
        for streams in args.streams:
            run_dir = base / f"run-{streams}"
            run_dir.mkdir()
            env = {
                "TUNESERVE_DATA_DIR": str(run_dir / "data"),
                "TUNESERVE_BASE_MODELS_DIR": str(tiny.parent),
                "TUNESERVE_MAX_STREAMS_PER_TENANT": str(max(args.streams) + 10),
                "HF_HUB_OFFLINE": "1",
            }
            service = Service(env, run_dir, embedded=False)
            service.api_key = service.issue_key()
            service.start_process("api", "api", "--port", str(service.port))
            try:
                service.wait_healthy()
                file_id = service.upload(sentiment_rows(10))
                job_id = str(service.create_job(tiny_spec(file_id, file_id))["id"])
                idle_pid = service.processes["api"].pid
                print({"streams": 0, "api_rss_mib": rss_mib(idle_pid)})
                print(asyncio.run(measure(service, job_id, streams, args.seconds)))
            finally:
                service.stop()


if __name__ == "__main__":
    main()
