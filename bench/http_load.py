"""A lean HTTP/1.1 load generator: N keep-alive connections, each sending POSTs one after another.

On a 2-core machine the load generator shares the cores with the server it measures; httpx
spends about 2 ms of CPU per request, a large share of what a fast server needs. This client
sends pre-encoded requests over raw asyncio streams and parses only the status line and
Content-Length, so nearly all of the CPU goes to the server under test.
"""

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any


def percentile(ordered: list[float], q: float) -> float:
    """The q-quantile of sorted values (nearest rank, no interpolation)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]  # sorted, in seconds

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return percentile(self.latencies, q) * 1000

    def summary(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "throughput": self.requests / self.seconds,
            "p50_ms": self.percentile_ms(0.50),
            "p99_ms": self.percentile_ms(0.99),
        }


def encode_posts(
    host: str, port: int, path: str, headers: dict[str, str], bodies: list[dict[str, Any]]
) -> list[bytes]:
    """Each JSON body as a complete HTTP/1.1 keep-alive POST."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    requests = []
    for body in bodies:
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        requests.append(head.encode() + payload)
    return requests


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response whole; return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def run_load(
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    bodies: list[dict[str, Any]],
    concurrency: int,
    seconds: float,
) -> LoadResult:
    """`concurrency` clients, each on its own connection, post bodies in turn for `seconds`."""
    requests = encode_posts(host, port, path, headers, bodies)
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def client(index: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            i = index
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                writer.write(requests[i % len(requests)])
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors += 1
                i += concurrency
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return LoadResult(len(latencies), errors, elapsed, latencies)
