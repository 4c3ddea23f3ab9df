"""Uploads on the real API process: peak memory growth, time to 413, and parse speed.

    HF_HUB_OFFLINE=1 python bench/upload_parse.py [--tiny-mib 200] [--pass-mb 50]
        [--concurrent 4] [--out docs/upload-parse.json]

Starts `tuneserve api` alone (SQLite in a temp data dir, default limits) and uploads, one at a
time over HTTP from this process:

1. `tiny-rows.csv`: a header and 4-byte rows (`abc\\n`) up to `--tiny-mib` MiB (200 MiB, the
   byte limit, is 52 million rows): answered 413 `too_many_rows`.
2. `long-line.jsonl`: one JSON object of `--tiny-mib` MiB on a single line: 413 `line_too_long`.
3. `mrpc-like.tsv`: MRPC's train.tsv (../shared/data/glue/MRPC) repeated up to `--pass-mb` MB,
   or synthetic rows of the same shape when it is absent: answered 201.
4. `--concurrent` copies of the first file at once (0: skipped), all answered 413.

For each it reports the wall time of the request (client side, upload included), the growth of
the API process's peak resident memory over its resident memory just before (VmHWM, reset
through /proc/PID/clear_refs before each upload; where that is refused, RSS sampled every
10 ms), and for the file that passes, MB/s (file size / wall time). It also checks that no
`.upload-*` temp file is left in the uploads folder. Exits non-zero if an answer is not the
expected one.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.service import Service  # noqa: E402

MIB = 1024 * 1024
MRPC = ROOT.parent / "shared" / "data" / "glue" / "MRPC" / "train.tsv"
SYNTHETIC_ROW = (
    "1\t1089874\t1089925\tThe witness said the company's shares rose 5 percent on Tuesday , "
    'after the "surprise" announcement .\tShares of the company rose 5 percent on Tuesday after '
    "the announcement , the witness said .\n"
)


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class PeakMemory:
    """Peak RSS growth of a process during a block: VmHWM after a reset, else sampled RSS."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.base = 0
        self.sampled = 0
        self.method = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        self.base = status_kib(self.pid, "VmRSS")
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # resets VmHWM to VmRSS
            self.method = "VmHWM"
        except OSError:
            self.method = "RSS sampled every 10 ms"
        self.sampled = self.base
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            try:
                self.sampled = max(self.sampled, status_kib(self.pid, "VmRSS"))
            except (OSError, KeyError):
                return

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        peak = status_kib(self.pid, "VmHWM") if self.method == "VmHWM" else self.sampled
        self.growth_mib = max(peak - self.base, 0) / 1024


def write_tiny_rows(path: Path, size: int) -> int:
    """A one-column CSV of 4-byte rows, `size` bytes in all; its row count."""
    block = b"abc\n" * (MIB // 4)
    with path.open("wb") as out:
        out.write(b"t\n")
        written = 2
        while written + len(block) <= size:
            out.write(block)
            written += len(block)
        rest = (size - written) // 4
        out.write(b"abc\n" * rest)
    return (size - 2) // 4


def write_long_line(path: Path, size: int) -> None:
    with path.open("wb") as out:
        out.write(b'{"text": "')
        block = b"x" * MIB
        for _ in range(size // MIB - 1):
            out.write(block)
        out.write(b'", "label": "1"}\n')


def write_mrpc_like(path: Path, size: int) -> tuple[int, str]:
    if MRPC.is_file():
        header, *rows = MRPC.read_bytes().decode("utf-8-sig").splitlines(keepends=True)
        source = "MRPC train.tsv, repeated"
    else:
        header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        rows = [SYNTHETIC_ROW]
        source = "synthetic MRPC-shaped rows"
    body = "".join(rows).encode()
    count = 0
    with path.open("wb") as out:
        out.write(header.encode())
        written = len(header)
        while written + len(body) <= size:
            out.write(body)
            written += len(body)
            count += len(rows)
    return count, source


def upload(client: httpx.Client, path: Path, fmt: str) -> tuple[int, dict[str, Any], float]:
    start = time.perf_counter()
    with path.open("rb") as handle:
        response = client.post(
            "/v1/files", files={"file": (path.name, handle)}, data={"format": fmt}
        )
    return response.status_code, response.json(), time.perf_counter() - start


def leftovers(service: Service) -> list[str]:
    return sorted(p.name for p in service.settings().uploads_dir.glob(".upload-*"))


def measure(
    name: str,
    service: Service,
    pid: int,
    run: Callable[[], list[tuple[int, dict[str, Any], float]]],
    expect: tuple[int, str | None],
) -> dict[str, Any]:
    with PeakMemory(pid) as memory:
        answers = run()
    time.sleep(0.5)  # the request's spooled file is closed after the answer is sent
    ok = True
    for status, body, _ in answers:
        code = body.get("error", {}).get("code")
        ok = ok and (status, code) == expect
    result = {
        "case": name,
        "answers": sorted(
            {f"{s} {b.get('error', {}).get('code', '')}".strip() for s, b, _ in answers}
        ),
        "as_expected": ok,
        "wall_s": round(max(w for _, _, w in answers), 2),
        "peak_rss_growth_mib": round(memory.growth_mib, 1),
        "memory_method": memory.method,
        "temp_files_left": leftovers(service),
    }
    if len(answers) == 1 and answers[0][0] == 201:
        result["rows"] = answers[0][1]["row_count"]
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny-mib", type=int, default=200)
    parser.add_argument("--pass-mb", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="upload-bench-"))
    env = {
        "TUNESERVE_DATA_DIR": str(work / "data"),
        "TUNESERVE_DATABASE_URL": f"sqlite:///{work / 'tuneserve.db'}",
        "TUNESERVE_BROKER_URL": f"sqla+sqlite:///{work / 'broker.db'}",
        "HF_HUB_OFFLINE": "1",
    }
    service = Service(env, work, embedded=False, issue_key=False)
    results: list[dict[str, Any]] = []
    try:
        tiny = work / "tiny-rows.csv"
        tiny_rows = write_tiny_rows(tiny, args.tiny_mib * MIB)
        long_line = work / "long-line.jsonl"
        write_long_line(long_line, args.tiny_mib * MIB)
        passing = work / "mrpc-like.tsv"
        passing_rows, source = write_mrpc_like(passing, args.pass_mb * 1_000_000)

        migrated = service.cli("migrate")
        if migrated.returncode != 0:
            raise SystemExit(f"tuneserve migrate failed:\n{migrated.stdout}{migrated.stderr}")
        service.api_key = service.issue_key("bench")
        api = service.start_process("api", "api", "--port", str(service.port))
        service.wait_healthy()
        pid = api.pid
        settings = service.settings()
        print(
            f"limits: {settings.max_upload_bytes} bytes, {settings.max_upload_rows} rows, "
            f"{settings.max_upload_line_chars} characters a line; API pid {pid}, "
            f"RSS {status_kib(pid, 'VmRSS') / 1024:.0f} MiB",
            flush=True,
        )
        with service.client() as client:
            client.timeout = httpx.Timeout(600)
            one = lambda path, fmt: lambda: [upload(client, path, fmt)]  # noqa: E731
            size_mib = round(tiny.stat().st_size / MIB, 1)
            results.append(
                measure(
                    f"tiny-rows.csv: {size_mib} MiB, {tiny_rows} rows",
                    service,
                    pid,
                    one(tiny, "csv"),
                    (413, "too_many_rows"),
                )
            )
            results.append(
                measure(
                    f"long-line.jsonl: one line of {args.tiny_mib} MiB",
                    service,
                    pid,
                    one(long_line, "jsonl"),
                    (413, "line_too_long"),
                )
            )
            passed = measure(
                f"mrpc-like.tsv: {passing.stat().st_size / 1e6:.1f} MB, {passing_rows} rows "
                f"({source})",
                service,
                pid,
                one(passing, "tsv"),
                (201, None),
            )
            passed["mb_per_s"] = round(passing.stat().st_size / 1e6 / passed["wall_s"], 1)
            passed["as_expected"] = passed["as_expected"] and passed.get("rows") == passing_rows
            print(f"  {passed['mb_per_s']} MB/s", flush=True)
            results.append(passed)
        if args.concurrent:

            def many() -> list[tuple[int, dict[str, Any], float]]:
                def one_upload(_: int) -> tuple[int, dict[str, Any], float]:
                    with service.client() as own:
                        own.timeout = httpx.Timeout(600)
                        return upload(own, tiny, "csv")

                with ThreadPoolExecutor(args.concurrent) as pool:
                    return list(pool.map(one_upload, range(args.concurrent)))

            results.append(
                measure(
                    f"{args.concurrent} x tiny-rows.csv at once",
                    service,
                    pid,
                    many,
                    (413, "too_many_rows"),
                )
            )
        alive = api.poll() is None
    finally:
        service.stop()
        logs = service.logs()
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "command": "HF_HUB_OFFLINE=1 python bench/upload_parse.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "results": results,
        "api_alive_at_end": alive,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    bad = [r["case"] for r in results if not r["as_expected"] or r["temp_files_left"]]
    if bad or not alive:
        print(logs[-3000:])
        raise SystemExit(f"unexpected answers or leftovers: {bad}; API alive: {alive}")


if __name__ == "__main__":
    main()
