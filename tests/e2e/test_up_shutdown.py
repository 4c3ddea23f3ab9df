"""`pkill -f "tuneserve up"` (SIGTERM to `tuneserve up` alone) stops its worker too."""

import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.service import Service

pytestmark = pytest.mark.e2e


def group_members(group: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == group:
                    members.append(int(entry.name))
            except ProcessLookupError:
                continue
    return members


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_sigterm_to_up_stops_the_api_and_the_worker(tmp_path: Path) -> None:
    service = Service({"TUNESERVE_DATA_DIR": str(tmp_path / "data")}, tmp_path, embedded=True)
    service.start()
    try:
        up = service.processes["up"]
        deadline = time.monotonic() + 60
        while len(group_members(up.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)  # up, the Celery parent and its pool process
        assert len(group_members(up.pid)) >= 3, service.logs()

        os.kill(up.pid, signal.SIGTERM)  # the process alone, not its group
        up.wait(timeout=60)
        deadline = time.monotonic() + 30
        while group_members(up.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert group_members(up.pid) == [], f"left running after up ended\n{service.logs()}"
    finally:
        service.stop()
