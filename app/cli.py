"""The `tuneserve` command: run the service (up, api, worker, migrate), manage API keys, demo,
and talk to a server (files, jobs, models, predict)."""

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from app.client.parser import add_client_commands
from app.core.config import Settings, get_settings
from app.core.redact import display_url
from app.storage.base import StorageConfigError

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


def check_storage(settings: Settings, forks_later: bool = False) -> None:
    """A store that cannot be used stops the process at its start (see main)."""
    from app.storage import check_storage as check

    check(settings, forks_later=forks_later)


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.celery_app import celery

    settings = get_settings()
    settings.ensure_dirs()
    check_storage(settings, forks_later=True)  # the pool processes are forked
    celery.worker_main(_worker_argv(settings.queue_name, args.loglevel))
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    check_storage(get_settings())
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        log_level=args.loglevel.lower(),
        timeout_graceful_shutdown=10,  # open event streams must not hold a shutdown
    )
    return 0


def cmd_migrate(_args: argparse.Namespace) -> int:
    from app.core.migrate import upgrade_to_head

    settings = get_settings()
    settings.ensure_dirs()
    upgrade_to_head(settings.sqlalchemy_url)
    print(f"database at head: {display_url(settings.sqlalchemy_url)}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """API in this process, one worker in a child process restarted if it dies."""
    import uvicorn

    from app.core.migrate import upgrade_to_head

    settings = get_settings()
    settings.ensure_dirs()
    check_storage(settings)
    upgrade_to_head(settings.sqlalchemy_url)  # before the worker starts polling its tables
    _announce_first_key(settings)
    print(f"tuneserve: data in {settings.resolved_data_dir}", flush=True)
    print(f"tuneserve: database {display_url(settings.sqlalchemy_url)}", flush=True)
    print(f"tuneserve: broker {display_url(settings.celery_broker_url)}", flush=True)
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
    # Once shut down, uvicorn raises the signal that stopped it again. With the default
    # SIGTERM action that would end this process at once, before the worker is stopped below,
    # and leave it running: the signal has done its work by then, so ignore it.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda _signum, _frame: None)
    try:
        uvicorn.run(
            "app.main:app",
            host=args.host,
            port=args.port,
            log_level=args.loglevel.lower(),
            timeout_graceful_shutdown=10,  # open event streams must not hold a shutdown
        )
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


def _announce_first_key(settings: Settings) -> None:
    from app.auth.commands import ensure_first_key, first_key_path

    # The key itself is never printed: this output usually goes to a log file that others can
    # read, while the key file is 0600.
    if ensure_first_key(settings) is not None:
        print(
            f"tuneserve: first API key (tenant 'default') saved to {first_key_path(settings)} "
            "(mode 0600); `tuneserve demo` and the client commands read it from there",
            flush=True,
        )
    else:
        print(
            "tuneserve: API keys: `tuneserve keys list`; new ones with "
            "`tuneserve keys create --tenant NAME`",
            flush=True,
        )


def cmd_keys(args: argparse.Namespace) -> int:
    from app.auth import commands

    settings = get_settings()
    if args.keys_command == "create":
        return commands.create_key(settings, args.tenant, args.name, args.quiet)
    if args.keys_command == "list":
        return commands.list_keys(settings, args.all)
    return commands.revoke_key(settings, args.key_id)


def cmd_demo(args: argparse.Namespace) -> int:
    from app.client.credentials import MissingApiKey, resolve_api_key
    from app.demo import run_demo, wait_until_up

    wait_until_up(args.url)  # `tuneserve up` saves its first key before it starts listening
    try:
        api_key = resolve_api_key(get_settings(), args.api_key)
    except MissingApiKey as exc:
        raise SystemExit(str(exc)) from None
    return run_demo(
        url=args.url,
        api_key=api_key,
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

    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    keys.set_defaults(func=cmd_keys)
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="a new key for a tenant (made if new)")
    create.add_argument("--tenant", required=True, help="tenant name, e.g. your team")
    create.add_argument("--name", default="key", help="what the key is for")
    create.add_argument("--quiet", action="store_true", help="print only the key")
    listing = keys_sub.add_parser("list", help="keys (never their secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    revoke = keys_sub.add_parser("revoke", help="refuse a key from now on")
    revoke.add_argument("key_id", help="the key's id (key_…), from `tuneserve keys list`")

    demo = sub.add_parser("demo", help="fine-tune MRPC through a running service")
    demo.add_argument("--url", default=os.environ.get("TUNESERVE_URL", "http://127.0.0.1:8000"))
    demo.add_argument(
        "--api-key",
        default=os.environ.get("TUNESERVE_API_KEY"),
        help="default: $TUNESERVE_API_KEY, else the first key `tuneserve up` saved",
    )
    demo.add_argument("--data", help="folder with MRPC train.tsv and dev.tsv")
    demo.add_argument("--base-model", default="all-MiniLM-L6-v2")
    demo.add_argument("--epochs", type=int, default=3)
    demo.add_argument("--train-rows", type=int, default=None, help="use only the first N pairs")
    demo.set_defaults(func=cmd_demo)
    add_client_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except StorageConfigError as exc:  # one clear line, not a stack trace
        print(f"tuneserve: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
