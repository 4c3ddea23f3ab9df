"""The argparse subcommands of the client: files, jobs, models, predict."""

import argparse
from functools import partial
from typing import Any

from app.client import commands
from app.client.credentials import DEFAULT_URL, KEY_ENV, URL_ENV

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def _client_options() -> argparse.ArgumentParser:
    """--url, --api-key and --json, shared by every client command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"the server (default: ${URL_ENV}, else {DEFAULT_URL})")
    common.add_argument(
        "--api-key",
        help=f"default: ${KEY_ENV}, else the first key `tuneserve up` saved in the data dir",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON")
    return common


def _command(
    sub: "argparse._SubParsersAction[argparse.ArgumentParser]",
    name: str,
    help_text: str,
    command: commands.Command,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text, **kwargs)
    parser.set_defaults(func=partial(commands.run, command))
    return parser


def add_client_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `files`, `jobs`, `models` and `predict` on the `tuneserve` parser."""
    common = [_client_options()]

    files = sub.add_parser("files", help="upload, download and delete dataset files")
    files_sub = files.add_subparsers(dest="files_command", required=True)
    upload = _command(
        files_sub,
        "upload",
        "upload a CSV, TSV or JSON Lines file",
        commands.files_upload,
        parents=common,
    )
    upload.add_argument("path", help="the file")
    upload.add_argument(
        "--format", choices=("csv", "tsv", "jsonl"), help="default: from the file name"
    )
    upload.add_argument(
        "--no-header",
        action="store_true",
        help="the file (CSV or TSV) has no header line: its columns are column_1 … column_n",
    )
    upload.add_argument(
        "--column-names", help="with --no-header: the columns' names, comma-separated"
    )

    for name, help_text, command in (
        ("download", "save a file as it was stored", commands.files_download),
        ("delete", "delete a file and free its bytes", commands.files_delete),
    ):
        parser = _command(files_sub, name, help_text, command, parents=common)
        parser.add_argument("file_id")
        if name == "download":
            _add_output(parser, "default: the file's uploaded name, in the current folder")

    jobs = sub.add_parser("jobs", help="create, list, show, cancel and watch fine-tune jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    _add_create(jobs_sub, common)
    listing = _command(jobs_sub, "list", "jobs, newest first", commands.jobs_list, parents=common)
    listing.add_argument("--status", choices=JOB_STATUSES)
    listing.add_argument("--limit", type=int, default=20, help="at most N jobs (default 20)")
    for name, help_text, command in (
        ("show", "status, spec, progress and per-epoch metrics", commands.jobs_show),
        ("cancel", "cancel a queued or running job", commands.jobs_cancel),
        ("watch", "follow a job's events: a progress bar per epoch", commands.jobs_watch),
        ("checkpoints", "the epochs whose weights a job kept", commands.jobs_checkpoints),
        ("delete", "delete a finished job, its metrics and kept weights", commands.jobs_delete),
    ):
        _command(jobs_sub, name, help_text, command, parents=common).add_argument("job_id")

    models = sub.add_parser("models", help="trained models")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_list = _command(
        models_sub, "list", "models, newest first", commands.models_list, parents=common
    )
    models_list.add_argument("--limit", type=int, default=100)
    download = _command(
        models_sub,
        "download",
        "save a model's Hugging Face folder as a .tar.gz",
        commands.models_download,
        parents=common,
    )
    download.add_argument("model_id")
    _add_output(download, "default: MODEL_ID.tar.gz in the current folder")
    _command(
        models_sub,
        "delete",
        "delete a model and free its bytes",
        commands.models_delete,
        parents=common,
    ).add_argument("model_id")

    _command(sub, "usage", "bytes this tenant stores, by kind", commands.usage, parents=common)

    batches = sub.add_parser(
        "batch-predictions", help="label a file with a model in a worker (and evaluate it)"
    )
    batches_sub = batches.add_subparsers(dest="batch_command", required=True)
    create = _command(
        batches_sub,
        "create",
        "label an uploaded file; with its label column, also evaluate the model",
        commands.batch_create,
        parents=common,
    )
    create.add_argument("model_id")
    create.add_argument("file_id")
    create.add_argument("--text-column", help="default: the model's training text column")
    create.add_argument("--text-pair-column")
    create.add_argument("--label-column", help="default: the training label column, if present")
    create.add_argument("--precision", choices=("fp32", "bf16", "int8"))
    listing = _command(
        batches_sub, "list", "batch predictions, newest first", commands.batch_list, parents=common
    )
    listing.add_argument("--limit", type=int, default=20)
    for name, help_text, command in (
        ("show", "status, rows, output file and evaluation", commands.batch_show),
        ("watch", "rows done as it runs, then the result", commands.batch_watch),
        ("cancel", "cancel a queued or running batch prediction", commands.batch_cancel),
    ):
        _command(batches_sub, name, help_text, command, parents=common).add_argument("batch_id")

    predict = _command(
        sub,
        "predict",
        "label a text (or a text pair) with a trained model",
        commands.predict,
        parents=common,
    )
    predict.add_argument("model_id", help="mdl_…, from `tuneserve models list`")
    predict.add_argument("text")
    predict.add_argument("text_pair", nargs="?", help="the second text, for pair models")


def _add_output(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("-o", "--output", metavar="PATH", help=f"a file or a folder ({default})")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")


def _add_create(
    jobs_sub: "argparse._SubParsersAction[argparse.ArgumentParser]",
    common: list[argparse.ArgumentParser],
) -> None:
    create = _command(
        jobs_sub,
        "create",
        "queue a fine-tune job, from options or from a JSON spec file",
        commands.jobs_create,
        parents=common,
    )
    create.add_argument(
        "--spec", help="a JSON file with the whole job spec, instead of the options below"
    )
    create.add_argument("--base-model", help="a base-models folder, a Hub id or mdl_…")
    create.add_argument("--train", metavar="FILE_ID", help="the uploaded training file")
    create.add_argument(
        "--validation",
        metavar="FILE_ID",
        help="the uploaded validation file (default: a held-out share of the train file)",
    )
    create.add_argument("--text-column")
    create.add_argument("--text-pair-column")
    create.add_argument("--label-column")
    create.add_argument("--epochs", type=int)
    create.add_argument("--learning-rate", type=float)
    create.add_argument("--batch-size", type=int, help="per-device train batch size")
    create.add_argument("--seed", type=int)
    create.add_argument("--metrics", help="comma-separated, e.g. accuracy,f1")
    create.add_argument(
        "--task",
        choices=("single_label_classification", "regression", "multi_label_classification"),
        help="default: inferred from the train file",
    )
    create.add_argument(
        "--label-delimiter", help='multi-label: the label cell\'s separator, e.g. ","'
    )
    create.add_argument("--threshold", type=float, help="multi-label: a label is on from here")
    create.add_argument(
        "--label-names",
        metavar="FILE",
        help="names for the label values: a JSON object, or a text file of one name a line "
        "(line n names value n-1, as GoEmotions' emotions.txt)",
    )
    create.add_argument("--class-weights", choices=("balanced",))
    create.add_argument("--metric-for-best-model", help="default: the first metric")
    create.add_argument("--idempotency-key", help="the same key and spec return the same job")
