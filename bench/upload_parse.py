"""Uploads on the real API process: peak memory growth, time to 413, and parse speed.

    HF_HUB_OFFLINE=1 python bench/upload_parse.py [--tiny-mib 200] [--pass-mb 50]
        [--concurrent 40] [--concurrent-mib 50] [--out FILE.json] [--api-root CHECKOUT]

Starts `tuneserve api` alone (SQLite in a temp data dir, default limits) and uploads, one at a
time over HTTP from this process:

1. `mrpc-like.tsv`: MRPC's train.tsv (../shared/data/glue/MRPC) repeated up to `--pass-mb` MB,
   or synthetic rows of the same shape when it is absent: answered 201 (first, so that its
   memory is measured on a fresh process).
2. `tiny-rows.csv`: a header and 4-byte rows (`abc\\n`) up to `--tiny-mib` MiB (200 MiB, the
   byte limit, is 52 million rows): answered 413 `too_many_rows`.
3. `long-line.jsonl`: one JSON object of `--tiny-mib` MiB on a single line: 413 `line_too_long`.
4. `wide-header.csv`: a header line of the line limit's length, of 2-character names: 413
   `too_many_columns` (the most fields one line can hold).
5. `nested.jsonl`: 16 lines of the line limit's length, each a cell of empty JSON objects (the
   most Python objects one line can make): answered 201.
6. `--concurrent` uploads at once of a `--concurrent-mib` MiB file of 4-byte rows (0: none),
   all answered 413 `too_many_rows`.

For each it reports the wall time of the request (client side, upload included), the growth of
the API process's peak resident memory over its resident memory just before (VmHWM, reset
through /proc/PID/clear_refs before each upload; where that is refused, RSS sampled every
10 ms), and for the MRPC-like file, MB/s (file size / wall time). The cases run one after the
other in one process, so a later one may reuse memory an earlier one freed. It also checks
that no `.upload-*` temp file is left in the uploads folder, and exits non-zero if an answer
is not the expected one or the API died. `--api-root` runs the API from another checkout
(e.g. `git archive <commit>` unpacked), to compare with an older version.
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

import tests.support.service as service_module  # noqa: E402
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


def write_wide_header(path: Path, chars: int) -> None:
    """A CSV header of 2-character column names, one line of `chars` characters."""
    names = chars // 3
    with path.open("wb") as out:
        out.write(b",".join(b"c%d" % (i % 10) for i in range(names)) + b"\n1\n")


def write_nested_json(path: Path, lines: int, chars: int) -> None:
    """Lines just under `chars` characters, each one cell of many empty JSON objects."""
    count = (chars - 16) // 4
    line = b'{"a": [' + b"{}, " * (count - 1) + b'{}], "b": 1}\n'
    with path.open("wb") as out:
        for _ in range(lines):
            out.write(line)


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


def one_upload(
    client: httpx.Client, path: Path, fmt: str
) -> Callable[[], list[tuple[int, dict[str, Any], float]]]:
    return lambda: [upload(client, path, fmt)]


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
    parser.add_argument("--concurrent", type=int, default=40)
    parser.add_argument("--concurrent-mib", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--api-root",
        type=Path,
        default=None,
        help="run the API from this checkout instead (e.g. an older commit, to compare)",
    )
    args = parser.parse_args()
    if args.api_root:
        service_module.ROOT = args.api_root.resolve()

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
        concurrent_file = work / "tiny-rows-concurrent.csv"
        write_tiny_rows(concurrent_file, args.concurrent_mib * MIB)
        wide = work / "wide-header.csv"
        nested = work / "nested.jsonl"
        passing = work / "mrpc-like.tsv"
        passing_rows, source = write_mrpc_like(passing, args.pass_mb * 1_000_000)

        migrated = service.cli("migrate")
        if migrated.returncode != 0:
            raise SystemExit(f"tuneserve migrate failed:\n{migrated.stdout}{migrated.stderr}")
        # With the checkout's own CLI, so that an older checkout keeps its own schema.
        created = service.cli("keys", "create", "--tenant", "bench", "--name", "bench")
        if created.returncode != 0:
            raise SystemExit(f"tuneserve keys create failed:\n{created.stderr}")
        service.api_key = next(w for w in created.stdout.split() if w.startswith("tsk_"))
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
        line_chars = settings.max_upload_line_chars
        write_wide_header(wide, line_chars)
        write_nested_json(nested, 16, line_chars)
        cases: list[tuple[str, Path, str, tuple[int, str | None]]] = [
            (
                f"mrpc-like.tsv: {passing.stat().st_size / 1e6:.1f} MB, {passing_rows} rows "
                f"({source})",
                passing,
                "tsv",
                (201, None),
            ),
            (
                f"tiny-rows.csv: {tiny.stat().st_size / MIB:.0f} MiB, {tiny_rows} rows of 4 bytes",
                tiny,
                "csv",
                (413, "too_many_rows"),
            ),
            (
                f"long-line.jsonl: one line of {args.tiny_mib} MiB",
                long_line,
                "jsonl",
                (413, "line_too_long"),
            ),
            (
                f"wide-header.csv: {line_chars // 3} columns on one line of {line_chars} chars",
                wide,
                "csv",
                (413, "too_many_columns"),
            ),
            (
                f"nested.jsonl: 16 lines of {line_chars} chars, each ~{line_chars // 4} "
                "empty JSON objects",
                nested,
                "jsonl",
                (201, None),
            ),
        ]
        with service.client() as client:
            client.timeout = httpx.Timeout(600)
            for name, path, fmt, expect in cases:
                result = measure(name, service, pid, one_upload(client, path, fmt), expect)
                if path == passing:
                    result["mb_per_s"] = round(path.stat().st_size / 1e6 / result["wall_s"], 1)
                    result["as_expected"] &= result.get("rows") == passing_rows
                    print(f"  {result['mb_per_s']} MB/s", flush=True)
                results.append(result)
        if args.concurrent:

            def many() -> list[tuple[int, dict[str, Any], float]]:
                def one_upload(_: int) -> tuple[int, dict[str, Any], float]:
                    with service.client() as own:
                        own.timeout = httpx.Timeout(600)
                        return upload(own, concurrent_file, "csv")

                with ThreadPoolExecutor(args.concurrent) as pool:
                    return list(pool.map(one_upload, range(args.concurrent)))

            results.append(
                measure(
                    f"{args.concurrent} x tiny-rows.csv of {args.concurrent_mib} MiB at once",
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
        "api_root": str(service_module.ROOT),
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    bad = [r["case"] for r in results if not r["as_expected"] or r["temp_files_left"]]
    if bad or not alive:
        print(logs[-3000:])
        raise SystemExit(f"unexpected answers or leftovers: {bad}; API alive: {alive}")


if __name__ == "__main__":
    main()
