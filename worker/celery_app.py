"""The Celery worker application: `celery -A worker.celery_app worker` or `tuneserve worker`.

The parent process never imports torch: training code is imported in the pool's child
process (when it starts), so no CUDA context exists before fork.
"""

import logging
import os
import signal
import sys
import threading
from typing import Any

from billiard import process as billiard_process
from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutting_down

from app.core.config import get_settings
from app.jobs.reaper import start_reaper_thread
from app.queue import TRAIN_TASK, get_celery
from worker.pdeathsig import die_with_parent

logger = logging.getLogger(__name__)
celery = get_celery()
_reaper_stop = threading.Event()


@celery.task(name=TRAIN_TASK, acks_late=True, reject_on_worker_lost=True)
def train_job(job_id: str) -> str:
    from worker.runner import run_job

    return run_job(get_settings(), job_id)


@worker_init.connect
def _check_storage(**_kwargs: Any) -> None:
    """A store that cannot be used ends the worker at its start, with one line (`tuneserve
    worker` checked already; this is for `celery -A worker.celery_app worker`). Never the
    object store in this process itself: its pool processes are forked from it."""
    from app.storage import StorageConfigError, check_storage

    try:
        check_storage(get_settings(), forks_later=True)
    except StorageConfigError as exc:
        print(f"tuneserve worker: {exc}", file=sys.stderr, flush=True)
        os._exit(1)  # Celery logs and swallows what a signal handler raises


@worker_ready.connect
def _start_reaper(**_kwargs: Any) -> None:
    # Never the object store here: obstore's runtime does not survive the pool's forks.
    start_reaper_thread(get_settings(), _reaper_stop, sweep_store=False)


@worker_process_init.connect
def _die_with_parent(**_kwargs: Any) -> None:
    """A pool process whose worker died must not live on as a stray: on Linux the kernel
    kills it then (its job's lease expires and the job resumes elsewhere). Billiard can also
    start a replacement child while the parent is shutting down; that one ends here too."""
    die_with_parent()


@worker_process_init.connect
def _install_stop_handler(**_kwargs: Any) -> None:
    # In each pool process: SIGUSR2 from the parent means "stop training at the next step,
    # checkpoint, and give the job back to the queue".
    from app.jobs.states import StopReason
    from worker.lease import stop_all_training

    signal.signal(signal.SIGUSR2, lambda _sig, _frame: stop_all_training(StopReason.shutdown))


@worker_process_init.connect
def _keep_freed_memory(**_kwargs: Any) -> None:
    # Training reallocates the same buffers every step; see worker/allocator.py.
    from worker.allocator import keep_freed_memory

    keep_freed_memory()


@worker_process_init.connect
def _preload_training_code(**_kwargs: Any) -> None:
    # torch, transformers and datasets take seconds to import: pay that once per pool process,
    # when it starts, not inside the first job's time. Still after fork, so the parent stays
    # free of torch. The bf16 probe (a short matmul timing) runs here too, while no job trains.
    import worker.training  # noqa: F401
    from app.core.precision import bf16_is_native

    bf16_is_native()


@worker_process_init.connect
def _start_metrics_server(**_kwargs: Any) -> None:
    # In the pool process, where training runs: its Prometheus exporter (never fatal).
    from app.observability.worker import start_worker_metrics_server

    settings = get_settings()
    start_worker_metrics_server(settings.worker_metrics_host, settings.worker_metrics_port)


@worker_shutting_down.connect
def _on_shutdown(**_kwargs: Any) -> None:
    """Warm shutdown (SIGTERM): running jobs are checkpointed and requeued, not waited for."""
    _reaper_stop.set()
    for child in billiard_process.active_children():
        if child.pid:
            logger.info("asking pool process %s to stop training", child.pid)
            os.kill(child.pid, signal.SIGUSR2)
