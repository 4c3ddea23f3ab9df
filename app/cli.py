"""The `tuneserve` command: run the service (up, api, worker, migrate) and the demo client."""

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from app.core.config import get_settings

logger = logging.getLogger("tuneserve")


def _worker_argv(settings_queue: str, loglevel: str) -> list[str]:
    # Mingle, gossip and broker heartbeats need fanout exchanges that the embedded SQLAlchemy
    # transport lacks, and one worker process per job needs none of them.
    return [
        "worker",
        f"--loglevel={loglevel}",
        "--pool=prefork",
        "--concurrency=1",
        f"--queues={settings_queue}",
        f"--hostname=tuneserve-{os.getpid()}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.celery_app import celery

    settings = get_settings()
    settings.ensure_dirs()
    celery.worker_main(_worker_argv(settings.queue_name, args.loglevel))
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run("app.main:app", host=args.host, port=args.port, log_level=args.loglevel.lower())
    return 0


def cmd_migrate(_args: argparse.Namespace) -> int:
    from app.core.migrate import upgrade_to_head

    settings = get_settings()
    settings.ensure_dirs()
    upgrade_to_head(settings.sqlalchemy_url)
    print(f"database at head: {settings.sqlalchemy_url}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """API in this process, one worker in a child process restarted if it dies."""
    import uvicorn

    from app.core.migrate import upgrade_to_head

    settings = get_settings()
    settings.ensure_dirs()
    upgrade_to_head(settings.sqlalchemy_url)  # before the worker starts polling its tables
    print(f"tuneserve: data in {settings.resolved_data_dir}", flush=True)
    print(f"tuneserve: database {settings.sqlalchemy_url}", flush=True)
    print(f"tuneserve: broker {settings.celery_broker_url}", flush=True)
    print(f"tuneserve: API on http://{args.host}:{args.port}  (docs at /docs)", flush=True)

    stopping = threading.Event()
    worker_cmd = [sys.executable, "-m", "app.cli", "worker", "--loglevel", args.loglevel]
    holder: dict[str, subprocess.Popen[bytes]] = {}

    def supervise() -> None:
        while not stopping.is_set():
            holder["worker"] = process = subprocess.Popen(worker_cmd)
            while process.poll() is None and not stopping.is_set():
                time.sleep(0.5)
            if not stopping.is_set():
                print(f"tuneserve: worker exited ({process.returncode}); restarting", flush=True)
                time.sleep(1)

    supervisor = threading.Thread(target=supervise, name="worker-supervisor", daemon=True)
    supervisor.start()
    try:
        uvicorn.run("app.main:app", host=args.host, port=args.port, log_level=args.loglevel.lower())
    finally:
        stopping.set()
        process = holder.get("worker")
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from app.demo import run_demo

    return run_demo(
        url=args.url,
        data_dir=Path(args.data) if args.data else None,
        base_model=args.base_model,
        epochs=args.epochs,
        train_rows=args.train_rows,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuneserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def server(name: str, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text)
        command.add_argument("--host", default=os.environ.get("TUNESERVE_HOST", "127.0.0.1"))
        command.add_argument(
            "--port", type=int, default=int(os.environ.get("TUNESERVE_PORT", "8000"))
        )
        command.add_argument("--loglevel", default="INFO")
        return command

    server("up", "API and one worker together (embedded default)").set_defaults(func=cmd_up)
    server("api", "the API alone").set_defaults(func=cmd_api)
    worker = sub.add_parser("worker", help="a training worker alone")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="upgrade the database schema").set_defaults(func=cmd_migrate)

    demo = sub.add_parser("demo", help="fine-tune MRPC through a running service")
    demo.add_argument("--url", default=os.environ.get("TUNESERVE_URL", "http://127.0.0.1:8000"))
    demo.add_argument("--data", help="folder with MRPC train.tsv and dev.tsv")
    demo.add_argument("--base-model", default="all-MiniLM-L6-v2")
    demo.add_argument("--epochs", type=int, default=3)
    demo.add_argument("--train-rows", type=int, default=None, help="use only the first N pairs")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
