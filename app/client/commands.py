"""The client commands: each takes an API client and its parsed options, prints, and returns
the exit code. `run` builds the client and turns every failure into one line and exit 1."""

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from pydantic import BaseModel

from app.client import render
from app.client.credentials import MissingApiKey, resolve_api_key, resolve_url
from app.client.http import ApiClient, ClientError, PredictInput
from app.client.spec import build_spec, load_label_names, load_spec
from app.client.watch import watch_job
from app.core.config import get_settings

Command = Callable[[ApiClient, argparse.Namespace], int]


def run(command: Command, args: argparse.Namespace) -> int:
    """Run one client command against `--url` with the resolved API key."""
    logging.getLogger().setLevel(logging.WARNING)  # the output is the command's own
    url = resolve_url(args.url)
    try:
        with ApiClient(url, resolve_api_key(get_settings(), args.api_key)) as api:
            return command(api, args)
    except (ClientError, MissingApiKey) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except httpx.InvalidURL as exc:
        print(f"error: invalid server URL {url!r}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _print_json(model: BaseModel) -> None:
    print(model.model_dump_json(indent=2))


def files_upload(api: ApiClient, args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.is_file():
        raise ClientError(f"no file at {path}")
    if args.column_names and not args.no_header:
        raise ClientError(
            "--column-names names the columns of a file without a header: add --no-header"
        )
    upload = api.upload_file(path, args.format, not args.no_header, args.column_names)
    print(upload.model_dump_json(indent=2) if args.json else render.file_summary(upload))
    return 0


def _target(output: str | None, default_name: str, force: bool) -> Path:
    """Where a download goes: `-o PATH`, a file named `default_name` in `-o DIR`, or in the
    current directory; an existing file is kept unless --force."""
    target = Path(output) if output else Path(default_name)
    if target.is_dir():
        target = target / default_name
    if target.exists() and not force:
        raise ClientError(f"{target} exists; pass --force to overwrite it, or -o another path")
    if not target.parent.is_dir():
        raise ClientError(f"no folder {target.parent} to write {target.name} into")
    return target


def files_download(api: ApiClient, args: argparse.Namespace) -> int:
    record = api.get_file(args.file_id)
    target = _target(
        args.output, Path(record.filename).name or f"{record.id}.{record.format}", args.force
    )
    written = api.download_file(args.file_id, target)
    print(f"{target}  {render.size(written)}")
    return 0


def files_delete(api: ApiClient, args: argparse.Namespace) -> int:
    api.delete_file(args.file_id)
    print(f"{args.file_id}  deleted")
    return 0


SPEC_OPTIONS = (
    "base_model",
    "train",
    "validation",
    "text_column",
    "text_pair_column",
    "label_column",
    "epochs",
    "learning_rate",
    "batch_size",
    "seed",
    "metrics",
    "task",
    "label_delimiter",
    "threshold",
    "label_names",
    "class_weights",
    "metric_for_best_model",
)
# Without --validation the service holds out a seeded share of the train file.
REQUIRED_OPTIONS = ("base_model", "train", "text_column", "label_column")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def jobs_create(api: ApiClient, args: argparse.Namespace) -> int:
    given = [name for name in SPEC_OPTIONS if getattr(args, name) is not None]
    if args.spec:
        if given:
            options = ", ".join(_option(name) for name in given)
            raise ClientError(f"--spec holds the whole spec; leave out {options}")
        spec = load_spec(Path(args.spec))
    else:
        missing = [_option(name) for name in REQUIRED_OPTIONS if not getattr(args, name)]
        if missing:
            raise ClientError(f"missing {', '.join(missing)} (or pass the whole spec with --spec)")
        spec = build_spec(
            base_model=args.base_model,
            train_file_id=args.train,
            validation_file_id=args.validation,
            text_column=args.text_column,
            label_column=args.label_column,
            text_pair_column=args.text_pair_column,
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            seed=args.seed,
            metrics=args.metrics,
            task=args.task,
            label_delimiter=args.label_delimiter,
            threshold=args.threshold,
            label_names=load_label_names(Path(args.label_names)) if args.label_names else None,
            class_weights=args.class_weights,
            metric_for_best_model=args.metric_for_best_model,
        )
    job = api.create_job(spec, args.idempotency_key)
    print(job.model_dump_json(indent=2) if args.json else f"{job.id}  {job.status}")
    return 0


def jobs_list(api: ApiClient, args: argparse.Namespace) -> int:
    page = api.list_jobs(args.status, args.limit)
    if args.json:
        _print_json(page)
    elif page.data:
        print(render.jobs_table(page.data))
    else:
        print("no jobs")
    return 0


def jobs_show(api: ApiClient, args: argparse.Namespace) -> int:
    job = api.get_job(args.job_id)
    metrics = api.job_metrics(args.job_id)
    if args.json:
        print(
            json.dumps(
                {"job": job.model_dump(mode="json"), "metrics": metrics.model_dump(mode="json")},
                indent=2,
            )
        )
        return 0
    print(render.job_summary(job))
    print()
    if metrics.data:
        print(render.metrics_table(metrics.data))
    else:
        print("no metrics yet (one row per finished epoch)")
    return 0


def jobs_cancel(api: ApiClient, args: argparse.Namespace) -> int:
    job = api.cancel_job(args.job_id)
    if args.json:
        _print_json(job)
    elif job.status == "cancelled":
        print(f"{job.id}  cancelled")
    else:
        print(f"{job.id}  {job.status}, cancel requested: it stops at its next training step")
    return 0


def jobs_watch(api: ApiClient, args: argparse.Namespace) -> int:
    return watch_job(api, args.job_id, as_json=args.json)


def models_list(api: ApiClient, args: argparse.Namespace) -> int:
    models = api.list_models(args.limit)
    if args.json:
        _print_json(models)
    elif models.data:
        print(render.models_table(models.data))
    else:
        print("no models")
    return 0


def jobs_checkpoints(api: ApiClient, args: argparse.Namespace) -> int:
    checkpoints = api.job_checkpoints(args.job_id)
    if args.json:
        _print_json(checkpoints)
    elif checkpoints.data:
        print(render.checkpoints_table(checkpoints.data))
        print(
            "\n* the best epoch (the job's model). Register another with the API: "
            "POST /v1/jobs/{id}/checkpoints/{epoch}/model"
        )
    else:
        print("no kept checkpoints (a job keeps its epochs' weights once it has succeeded)")
    return 0


def jobs_delete(api: ApiClient, args: argparse.Namespace) -> int:
    api.delete_job(args.job_id)
    print(f"{args.job_id}  deleted")
    return 0


def models_download(api: ApiClient, args: argparse.Namespace) -> int:
    target = _target(args.output, f"{args.model_id}.tar.gz", args.force)
    written = api.download_model(args.model_id, target)
    print(f"{target}  {render.size(written)}")
    print(f"unpack with: tar -xzf {target}  (a Hugging Face folder named {args.model_id})")
    return 0


def models_delete(api: ApiClient, args: argparse.Namespace) -> int:
    api.delete_model(args.model_id)
    print(f"{args.model_id}  deleted")
    return 0


def usage(api: ApiClient, args: argparse.Namespace) -> int:
    answer = api.usage()
    if args.json:
        _print_json(answer)
    else:
        print(render.usage_table(answer))
    return 0


def predict(api: ApiClient, args: argparse.Namespace) -> int:
    item: PredictInput = args.text
    if args.text_pair is not None:
        item = {"text": args.text, "text_pair": args.text_pair}
    answer = api.predict(args.model_id, [item])
    if args.json:
        _print_json(answer)
    else:
        print(render.prediction(answer.predictions[0]))
    return 0


def batch_create(api: ApiClient, args: argparse.Namespace) -> int:
    body = {
        name: value
        for name, value in (
            ("file_id", args.file_id),
            ("text_column", args.text_column),
            ("text_pair_column", args.text_pair_column),
            ("label_column", args.label_column),
            ("precision", args.precision),
        )
        if value is not None
    }
    batch = api.create_batch(args.model_id, body)
    if args.json:
        _print_json(batch)
    else:
        print(f"{batch.id}  {batch.status}  ({batch.progress.total_rows} rows)")
        print(f"follow it with: tuneserve batch-predictions watch {batch.id}")
    return 0


def batch_show(api: ApiClient, args: argparse.Namespace) -> int:
    batch = api.get_batch(args.batch_id)
    if args.json:
        _print_json(batch)
    else:
        print(render.batch_summary(batch))
    return 0


def batch_list(api: ApiClient, args: argparse.Namespace) -> int:
    batches = api.list_batches(args.limit)
    if args.json:
        _print_json(batches)
    elif batches.data:
        for batch in batches.data:
            print(f"{batch.id}  {batch.status:<9}  {batch.model_id}  {batch.file_id}")
    else:
        print("no batch predictions")
    return 0


def batch_cancel(api: ApiClient, args: argparse.Namespace) -> int:
    batch = api.cancel_batch(args.batch_id)
    print(batch.model_dump_json(indent=2) if args.json else f"{batch.id}  {batch.status}")
    return 0


def batch_watch(api: ApiClient, args: argparse.Namespace) -> int:
    """Rows done, from the job's event stream and its progress; then the result."""
    from app.client.stream import follow_events

    last = ""
    for event in follow_events(api, args.batch_id):
        batch = api.get_batch(args.batch_id)
        line = f"{batch.status}  {batch.progress.rows} / {batch.progress.total_rows} rows"
        if line != last and not args.json:
            print(line)
            last = line
        if event.terminal:
            break
    batch = api.get_batch(args.batch_id)
    print(batch.model_dump_json(indent=2) if args.json else render.batch_summary(batch))
    return 0 if batch.status == "succeeded" else 1
