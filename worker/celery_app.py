"""The Celery worker application: `celery -A worker.celery_app worker` or `tuneserve worker`.

The parent process never imports torch: training code is imported inside the task, in the
pool's child process, so no CUDA context exists before fork.
"""

import logging
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutting_down

from app.core.config import get_settings
from app.jobs.reaper import start_reaper_thread
from app.queue import TRAIN_TASK, get_celery

logger = logging.getLogger(__name__)
celery = get_celery()
_reaper_stop = threading.Event()


@celery.task(name=TRAIN_TASK, acks_late=True, reject_on_worker_lost=True)
def train_job(job_id: str) -> str:
    from worker.runner import run_job

    return run_job(get_settings(), job_id)


@worker_ready.connect
def _start_reaper(**_kwargs: Any) -> None:
    start_reaper_thread(get_settings(), _reaper_stop)


@worker_shutting_down.connect
def _stop_reaper(**_kwargs: Any) -> None:
    _reaper_stop.set()
