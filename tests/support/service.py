"""Start the real API and worker processes for end-to-end tests, and drive them over HTTP."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import httpx

from app.core.config import Settings
from tests.support.auth import issue_test_key
from tests.support.sse import parse_sse

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("succeeded", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """`tuneserve up` (embedded) or `tuneserve api` + `tuneserve worker` (production)."""

    def __init__(
        self, env: dict[str, str], log_dir: Path, embedded: bool, issue_key: bool = True
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_dir = log_dir
        self.embedded = embedded
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.api_key = ""
        self.issue_key_at_start = issue_key

    def settings(self) -> Settings:
        """The settings the service's processes read from their environment."""
        with mock.patch.dict(os.environ, self.env, clear=True):
            return Settings()

    def issue_key(self, tenant: str = "tests") -> str:
        """A key of `tenant`, made straight in the service's database."""
        settings = self.settings()
        settings.ensure_dirs()
        return issue_test_key(settings.sqlalchemy_url, tenant)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a `tuneserve` command against this service's settings."""
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def start_process(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """`tuneserve <args>` logging to `<name>.log`; `env` overrides the service's (a
        process on a machine of its own: another data directory)."""
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def start(self, worker: bool = True) -> "Service":
        """The service; `worker=False`: the API alone (production mode), workers to come."""
        if self.issue_key_at_start:
            self.api_key = self.issue_key()
        port = str(self.port)
        if self.embedded:
            self.start_process("up", "up", "--port", port)
        else:
            self.start_process("api", "api", "--port", port)
            if worker:
                self.start_worker()
        self.wait_healthy()
        return self

    def start_worker(
        self, name: str = "worker", env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        return self.start_process(name, "worker", env=env)

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise AssertionError(f"API did not start; logs:\n{self.logs()}")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            # Anything of the group still alive is a stray: no test may leave one behind.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')[-6000:]}"
            for p in sorted(self.log_dir.glob("*.log"))
        )

    # --- HTTP helpers -------------------------------------------------------------------
    def client(self, api_key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key or self.api_key}"}
        return httpx.Client(base_url=self.url, timeout=120, headers=headers)

    def upload(self, rows: list[dict[str, str]], name: str = "data.jsonl") -> str:
        content = "".join(json.dumps(row) + "\n" for row in rows)
        return self.upload_bytes(name, content.encode())

    def upload_file(self, path: Path, rows: int | None = None) -> str:
        """Upload a file from disk, or only its header and first `rows` lines."""
        content = path.read_bytes()
        if rows is not None:
            content = b"\n".join(content.splitlines()[: rows + 1]) + b"\n"
        return self.upload_bytes(path.name, content)

    def upload_bytes(self, name: str, content: bytes, params: dict[str, str] | None = None) -> str:
        with self.client() as client:
            response = client.post("/v1/files", files={"file": (name, content)}, params=params)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def create_job(self, spec: dict[str, Any]) -> dict[str, Any]:
        with self.client() as client:
            response = client.post("/v1/jobs", json=spec)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def job(self, job_id: str) -> dict[str, Any]:
        with self.client() as client:
            return dict(client.get(f"/v1/jobs/{job_id}").json())

    def metrics(self, job_id: str) -> list[dict[str, Any]]:
        with self.client() as client:
            return list(client.get(f"/v1/jobs/{job_id}/metrics").json()["data"])

    def wait_for(
        self, job_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 300
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} not in {statuses}: {self.job(job_id)}\n{self.logs()}")

    def follow_to_end(self, job_id: str, timeout: float = 7200) -> dict[str, Any]:
        """Wait on the job's event stream, as `tuneserve jobs watch` does: unlike polling, it
        takes next to no CPU from a training worker on the same machine (benchmarks)."""
        with (
            self.client() as client,
            client.stream("GET", f"/v1/jobs/{job_id}/events/stream", timeout=timeout) as stream,
        ):
            for event in parse_sse(stream.iter_lines()):
                if event.get("event") in TERMINAL:
                    break
        return self.job(job_id)
