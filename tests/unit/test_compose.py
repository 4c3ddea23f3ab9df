"""docker-compose.yml, checked without Docker: the processes share nothing but PostgreSQL,
Redis and the object store, and the worker trains a job on all of its machine's GPUs."""

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def test_no_volume_is_shared_between_tuneserve_processes() -> None:
    services = compose()["services"]
    mounts: dict[str, list[str]] = {}
    for name in ("api", "worker"):
        for volume in services[name].get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("./"):  # read-only host folders (base models) aside
                mounts.setdefault(source, []).append(name)
    assert all(len(users) == 1 for users in mounts.values()), mounts


def test_every_tuneserve_process_points_at_the_same_store() -> None:
    services = compose()["services"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["TUNESERVE_STORAGE_URL"].startswith("s3://"), name
        assert env["TUNESERVE_S3_ENDPOINT"] == "http://seaweedfs:8333", name
        assert "seaweedfs-init" in services["api"]["depends_on"]


def test_the_store_accepts_the_services_default_keys() -> None:
    env = compose()["services"]["api"]["environment"]
    identities = json.loads((ROOT / "seaweedfs" / "s3.json").read_text())["identities"]
    credentials = {(c["accessKey"], c["secretKey"]) for i in identities for c in i["credentials"]}

    def default(value: str) -> str:
        found = re.fullmatch(r"\$\{\w+:-(.+)\}", value)
        return found.group(1) if found else value

    pair = (
        default(env["TUNESERVE_S3_ACCESS_KEY_ID"]),
        default(env["TUNESERVE_S3_SECRET_ACCESS_KEY"]),
    )
    assert pair in credentials


def test_the_worker_takes_every_gpu_with_a_process_each() -> None:
    worker = compose()["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["count"] == "all" and "gpu" in devices[0]["capabilities"]
    assert worker["environment"]["TUNESERVE_PROCESSES_PER_JOB"] == "auto"
