"""One job on several processes (DDP), seen from the Celery pool process.

The pool process keeps what it has on the one-process path: the claim, the lease and its
renewal, the decision how the attempt ended, and the model's commit. It launches
`torch.distributed.run` (worker/ddp_launch.py) as a child in a session of its own, with CUDA
untouched here, and talks to the ranks through files in the attempt's `ddp/` folder:

- `job.json`: what to train (written here, read by every rank);
- `stop`: a stop reason (cancel, warm shutdown, lost lease), written here, polled by the ranks;
- `progress.json`: rank 0's epoch and step, copied into the lease's heartbeat;
- `result-<rank>.json`: how a rank ended (rank 0 always, the others when they raised);
- `rank-<rank>.pid`: each rank's process id, for the last-resort kill.

Rank 0 makes the attempt's fenced writes itself (events, metrics rows, checkpoint pointers,
kept epochs) with this attempt's fence, exactly as the one-process callbacks do: a write of a
rank that outlived its attempt is refused by the fence like any other stale write.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.config import Settings
from app.jobs.schemas import Hyperparameters
from app.jobs.states import StopReason
from worker.attempt import Attempt
from worker.errors import JobFailure, TrainingInterrupted
from worker.lease import LeaseKeeper

logger = logging.getLogger(__name__)
ENTRY_MODULE = "worker.ddp_entry"
# After a stop request the ranks finish their step (and a warm shutdown its checkpoint);
# past this the process group is killed.
STOP_GRACE_SECONDS = 60.0
# After rank 0 reported its end, the others have this long to exit.
EXIT_GRACE_SECONDS = 15.0


class RankCrashed(RuntimeError):
    """A training process of the job raised or died: the attempt crashed (retried)."""


def rank_crash(type_name: str, message: str) -> RankCrashed:
    """A crash named as the rank's exception was (the attempt's error message, and an
    out-of-memory retry reason, read the name), as on the one-process path."""
    return type(type_name, (RankCrashed,), {})(message)


def cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def processes_for(settings: Settings, hp: Hyperparameters, devices: int | None = None) -> int:
    """How many processes train this job. A job's own `processes` is kept as asked (a GPU
    worker with fewer GPUs fails the job); the worker's setting is capped to its GPUs and to
    the largest count that splits the job's batch evenly."""
    devices = cuda_devices() if devices is None else devices
    if hp.processes is not None:
        if devices and hp.processes > devices:
            raise JobFailure(
                "not_enough_devices",
                f"The job asks for {hp.processes} processes; this worker has {devices} GPUs.",
            )
        return hp.processes
    setting = settings.processes_per_job
    wanted = max(devices, 1) if setting == "auto" else setting
    if devices:
        wanted = min(wanted, devices)
    while hp.per_device_train_batch_size % wanted:
        wanted -= 1
    return wanted


@dataclass(frozen=True)
class Control:
    """The files through which the pool process and the ranks of one attempt talk."""

    folder: Path

    @property
    def job(self) -> Path:
        return self.folder / "job.json"

    @property
    def stop(self) -> Path:
        return self.folder / "stop"

    @property
    def progress(self) -> Path:
        return self.folder / "progress.json"

    def result(self, rank: int) -> Path:
        return self.folder / f"result-{rank}.json"

    def pid(self, rank: int) -> Path:
        return self.folder / f"rank-{rank}.pid"


def write_json(path: Path, data: Any) -> None:
    """Atomically: a reader never sees half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data))
    os.replace(partial, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def launch_command(processes: int, control: Control) -> list[str]:
    return [
        sys.executable,
        "-m",
        "worker.ddp_launch",
        "--standalone",
        f"--nproc-per-node={processes}",
        "--max-restarts=0",
        "-m",
        ENTRY_MODULE,
        str(control.job),
    ]


def child_environment(processes: int) -> dict[str, str]:
    env = dict(os.environ)
    env["TUNESERVE_LAUNCHER_PARENT"] = str(os.getpid())
    # The cores are shared between the ranks (torchrun would set 1 thread per rank).
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    return env


def run_distributed(
    settings: Settings, attempt: Attempt, lease: LeaseKeeper, processes: int
) -> Any:
    """Train the attempt on `processes` ranks; returns rank 0's TrainingResult, or raises as
    the one-process path would (JobFailure, TrainingInterrupted, or a crash)."""
    from worker.training import TrainingResult

    control = Control(attempt.folder / "ddp")
    control.folder.mkdir(parents=True, exist_ok=True)
    for stale in control.folder.iterdir():
        stale.unlink()
    write_json(
        control.job,
        {
            "fence": {
                "job_id": attempt.fence.job_id,
                "owner": attempt.fence.owner,
                "attempt": attempt.fence.attempt,
            },
            "tenant_id": attempt.tenant_id,
            "spec": attempt.spec.model_dump(mode="json"),
            "folder": str(attempt.folder),
            "resume_from": str(attempt.resume_from) if attempt.resume_from else None,
            "processes": processes,
        },
    )
    logger.info("job %s trains on %d processes", attempt.job_id, processes)
    process = subprocess.Popen(
        launch_command(processes, control),
        env=child_environment(processes),
        start_new_session=True,  # signals to the worker's group never reach the ranks
    )
    try:
        code = _supervise(process, control, lease)
    finally:
        _kill_all(process, control, processes)
    result = read_json(control.result(0))
    if result is not None and result.get("end") == "ok" and code == 0:
        return TrainingResult(
            model_dir=Path(result["model_dir"]),
            labels=list(result["labels"]),
            metrics={k: float(v) for k, v in result["metrics"].items()},
            best_epoch=result["best_epoch"],
            stopped_early=bool(result["stopped_early"]),
            task=str(result["task"]),
            threshold=result["threshold"],
        )
    raise _failure(control, processes, code, lease.stop_reason)


def _failure(control: Control, processes: int, code: int, asked: StopReason | None) -> Exception:
    """What a run that did not end well raises, from the ranks' own reports first."""
    reports = [read_json(control.result(rank)) for rank in range(processes)]
    for report in reports:
        if report is None or report.get("end") == "ok":
            continue
        if report["end"] == "failure":
            return JobFailure(report["code"], report["message"])
        if report["end"] == "interrupted":
            return TrainingInterrupted(StopReason(report["reason"]))
    if asked is not None:  # killed while stopping
        return TrainingInterrupted(asked)
    for report in reports:
        if report is not None and report.get("end") == "crash":
            return rank_crash(str(report["type"]), str(report["message"]))
    return RankCrashed(f"a training process exited with code {code}")


def _supervise(process: subprocess.Popen[bytes], control: Control, lease: LeaseKeeper) -> int:
    """Wait for the launcher: forward a stop request, copy progress into the heartbeat, and
    kill the ranks when they outstay a grace period."""
    stop_sent: float | None = None
    ended_at: float | None = None
    while True:
        try:
            return process.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
        progress = read_json(control.progress)
        if progress:
            lease.progress.epoch = progress["epoch"]
            lease.progress.step = progress["step"]
            lease.progress.total_steps = progress["total_steps"]
        now = time.monotonic()
        reason = lease.stop_reason
        if reason is not None and stop_sent is None:
            logger.info("asking the ranks of job %s to stop (%s)", lease.job_id, reason)
            write_json(control.stop, reason.value)
            stop_sent = now
        if ended_at is None and control.result(0).exists():
            ended_at = now
        late = (stop_sent is not None and now - stop_sent > STOP_GRACE_SECONDS) or (
            ended_at is not None and now - ended_at > EXIT_GRACE_SECONDS
        )
        if late:
            logger.warning("the ranks of job %s did not exit in time; killing them", lease.job_id)
            _kill_group(process)
            return process.wait()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _kill_all(process: subprocess.Popen[bytes], control: Control, processes: int) -> None:
    """No rank outlives its attempt: the launcher's group, then any rank still running (the
    launcher starts each rank in a session of its own; they also die with it, PDEATHSIG)."""
    if process.poll() is None:
        _kill_group(process)
        process.wait()
    for rank in range(processes):
        try:
            pid = int(control.pid(rank).read_text())
        except (OSError, ValueError):
            continue
        if is_rank_process(pid):
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def is_rank_process(pid: int) -> bool:
    """Whether `pid` is a live rank of some job (its command line names the entry module)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    zombie = status.rsplit(")", 1)[-1].split()[0] == "Z"
    return not zombie and ENTRY_MODULE.encode() in cmdline
