"""One rank of a job trained on several processes, started by torchrun (worker/distributed.py):
`python -m worker.ddp_entry <attempt>/ddp/job.json`.

Every rank runs `run_training` with the attempt's fence and a lease that is never started (the
pool process renews it); rank 0 alone writes. A stop request arrives as the `stop` file, and
every rank follows rank 0's stop, save, evaluate and log decisions at each step (`RankSync`),
so that no rank waits in a collective that the others never reach.
"""

import os
import sys

from worker.pdeathsig import die_with_parent

die_with_parent(int(os.environ.get("TUNESERVE_LAUNCHER_PID", "0")) or None)

import logging  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments  # noqa: E402

from app.core.config import get_settings  # noqa: E402
from app.core.redact import public_message  # noqa: E402
from app.jobs.repository import Fence  # noqa: E402
from app.jobs.schemas import JobSpec  # noqa: E402
from app.jobs.states import StopReason  # noqa: E402
from worker.allocator import keep_freed_memory  # noqa: E402
from worker.attempt import Attempt  # noqa: E402
from worker.distributed import Control, read_json, write_json  # noqa: E402
from worker.errors import JobFailure, TrainingInterrupted  # noqa: E402
from worker.lease import LeaseKeeper  # noqa: E402
from worker.training import World, run_training  # noqa: E402

logger = logging.getLogger("worker.ddp_entry")
# Index 0: no stop. A broadcast carries the index.
REASONS: tuple[StopReason | None, ...] = (None, *StopReason)
POLL_SECONDS = 0.2


class RankSync(TrainerCallback):
    """Placed after the progress callback: every rank takes rank 0's control flags (and stop
    reason) at each step, epoch end and evaluation."""

    def __init__(self, lease: LeaseKeeper, device: torch.device) -> None:
        self.lease = lease
        self.device = device

    def _follow(self, control: TrainerControl) -> TrainerControl:
        flags = torch.tensor(
            [
                REASONS.index(self.lease.stop_reason),
                control.should_training_stop,
                control.should_save,
                control.should_evaluate,
                control.should_log,
            ],
            dtype=torch.int64,
            device=self.device,
        )
        dist.broadcast(flags, src=0)
        code, stop, save, evaluate, log = (int(value) for value in flags.tolist())
        reason = REASONS[code]
        if reason is not None:
            self.lease.request_stop(reason)
        control.should_training_stop = bool(stop)
        control.should_save = bool(save)
        control.should_evaluate = bool(evaluate)
        control.should_log = bool(log)
        return control

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> TrainerControl:
        return self._follow(control)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> TrainerControl:
        return self._follow(control)

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> TrainerControl:
        return self._follow(control)


class Watcher(threading.Thread):
    """Polls the stop file into the lease; on rank 0 also publishes the training progress."""

    def __init__(self, lease: LeaseKeeper, control: Control, rank: int) -> None:
        super().__init__(name="tuneserve-rank-watcher", daemon=True)
        self.lease, self.control, self.rank = lease, control, rank
        self.done = threading.Event()

    def run(self) -> None:
        published: dict[str, Any] | None = None
        while not self.done.wait(POLL_SECONDS):
            if self.lease.stop_reason is None and self.control.stop.exists():
                reason = read_json(self.control.stop)
                if reason is not None:
                    self.lease.request_stop(StopReason(reason))
            if self.rank == 0:
                progress = vars(self.lease.progress).copy()
                if progress != published:
                    write_json(self.control.progress, progress)
                    published = progress


def report(exc: BaseException) -> dict[str, Any]:
    """How a rank's run ended, for the pool process (worker.distributed._failure)."""
    if isinstance(exc, JobFailure):
        return {"end": "failure", "code": exc.code, "message": exc.message}
    if isinstance(exc, TrainingInterrupted):
        return {"end": "interrupted", "reason": exc.reason.value}
    message = public_message(exc, with_type=False) if str(exc).strip() else ""
    return {"end": "crash", "type": type(exc).__name__, "message": message}


def main() -> int:
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    job_file = Path(sys.argv[1])
    control = Control(job_file.parent)
    control.pid(rank).write_text(str(os.getpid()))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"[%(asctime)s: %(levelname)s/rank-{rank}] %(name)s: %(message)s",
    )
    keep_freed_memory()
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl")
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    job = read_json(job_file)
    settings = get_settings()
    fence = Fence(**job["fence"])
    resume = job["resume_from"]
    attempt = Attempt(
        fence,
        job["tenant_id"],
        JobSpec.model_validate(job["spec"]),
        Path(job["folder"]),
        Path(resume) if resume else None,
    )
    lease = LeaseKeeper(fence=fence, settings=settings)  # never started: no renewal here
    watcher = Watcher(lease, control, rank)
    watcher.start()
    world = World(rank=rank, size=size, callbacks=(RankSync(lease, device),))
    try:
        result = run_training(settings, attempt, lease, world)
    except BaseException as exc:
        if not isinstance(exc, JobFailure | TrainingInterrupted):
            logger.exception("rank %d of job %s crashed", rank, fence.job_id)
        write_json(control.result(rank), report(exc))
        logging.shutdown()
        # At once: the other ranks may wait in a collective that this one never reaches;
        # torchrun ends them when it sees this exit code.
        os._exit(1)
    watcher.done.set()
    if rank == 0:
        write_json(
            control.result(0),
            {
                "end": "ok",
                "model_dir": str(result.model_dir),
                "labels": result.labels,
                "metrics": result.metrics,
                "best_epoch": result.best_epoch,
                "stopped_early": result.stopped_early,
                "task": result.task,
                "threshold": result.threshold,
            },
        )
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
