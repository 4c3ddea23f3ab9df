"""The GLUE tasks (and GoEmotions) through the service with its defaults, in one run.

    HF_HUB_OFFLINE=1 python bench/glue.py --out docs

all-MiniLM-L6-v2 is fine-tuned by `tuneserve up` (embedded mode, one worker) on each task's
train file from ../shared/data, as GLUE distributes it, and evaluated every epoch on its dev
file: MRPC, RTE, STS-B, CoLA (no header line: uploaded with header=false and column names),
SST-2 (its first `--sst2-rows` train sentences) and GoEmotions (its first `--goemotions-rows`
train comments, 28 label names, `label_delimiter` ","). The job spec names only the data, the
columns and, where a task is reported with another metric than the defaults, its metrics;
every hyperparameter is the service's default (3 epochs, learning rate 5e-5, batch 8), but for
GoEmotions-balanced: GoEmotions with `class_weights` "balanced". Reported
per task: the best epoch's dev figures (the registered model's), every epoch's, and the wall
time from POST /v1/jobs to `succeeded`. Writes glue.json to --out (`--merge`: keeping the tasks
of an earlier run there that this one does not re-run). `--max-train-rows` and `--tasks` make a
short run (the smoke test).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.batch_predict import minilm_client  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
GLUE = DATA / "glue"
GOEMOTIONS = DATA / "goemotions"

# Each task: its files, how they are uploaded, and the spec's columns (and metrics, where the
# task is reported with others than the task's defaults).
TASKS: dict[str, dict[str, Any]] = {
    "MRPC": {
        "folder": GLUE / "MRPC",
        "spec": {
            "text_column": "#1 String",
            "text_pair_column": "#2 String",
            "label_column": "Quality",
        },
    },
    "RTE": {
        "folder": GLUE / "RTE",
        "spec": {
            "text_column": "sentence1",
            "text_pair_column": "sentence2",
            "label_column": "label",
        },
    },
    "STS-B": {
        "folder": GLUE / "STS-B",
        "spec": {
            "text_column": "sentence1",
            "text_pair_column": "sentence2",
            "label_column": "score",
        },
    },
    "CoLA": {
        "folder": GLUE / "CoLA",
        "columns": ["source", "label", "mark", "sentence"],
        "spec": {
            "text_column": "sentence",
            "label_column": "label",
            "metrics": ["matthews_correlation", "accuracy"],
        },
    },
    "SST-2": {
        "folder": GLUE / "SST-2",
        "spec": {"text_column": "sentence", "label_column": "label"},
    },
    "GoEmotions": {
        "folder": GOEMOTIONS,
        "columns": ["text", "labels", "comment_id"],
        "spec": {
            "text_column": "text",
            "label_column": "labels",
            "task": "multi_label_classification",
            "label_delimiter": ",",
        },
    },
}
# GoEmotions again with the one change a multi-label user reaches for first: each label's
# positives weighted by its negatives / positives (28 labels, most of them rare).
TASKS["GoEmotions-balanced"] = {
    **TASKS["GoEmotions"],
    "spec": {**TASKS["GoEmotions"]["spec"], "hyperparameters": {"class_weights": "balanced"}},
}

# What each task is usually reported with, and reference dev figures: Hugging Face's
# run_glue.py with bert-base-cased (transformers/examples/pytorch/text-classification), and
# for GoEmotions the paper's BERT-base (Demszky et al., 2020; test split, macro F1).
REFERENCES: dict[str, dict[str, float | None]] = {
    "MRPC": {"f1": 0.8885, "accuracy": 0.8407},
    "RTE": {"accuracy": 0.6570},
    "STS-B": {"pearson": 0.8864, "spearmanr": 0.8848},
    "CoLA": {"matthews_correlation": 0.5653},
    "SST-2": {"accuracy": 0.9232},
    "GoEmotions": {"f1_macro": 0.46, "f1_micro": None},  # the paper reports macro F1
}
REFERENCES["GoEmotions-balanced"] = REFERENCES["GoEmotions"]


def head_lines(path: Path, rows: int | None, header: bool) -> bytes:
    """The file's first `rows` data rows (and its header line)."""
    with path.open("rb") as handle:
        lines = handle.read().splitlines(keepends=True)
    keep = len(lines) if rows is None else rows + (1 if header else 0)
    return b"".join(lines[:keep])


def wait(client: httpx.Client, job_id: str) -> dict[str, Any]:
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return dict(job)
        time.sleep(5)


def upload(client: httpx.Client, name: str, content: bytes, columns: list[str] | None) -> str:
    params = {"header": "false", "column_names": ",".join(columns)} if columns else None
    answer = client.post("/v1/files", files={"file": (name, content)}, params=params)
    answer.raise_for_status()
    return str(answer.json()["id"])


def run_task(
    client: httpx.Client,
    name: str,
    task: dict[str, Any],
    train_rows: int | None,
    dev_rows: int | None = None,
) -> dict[str, Any]:
    folder, columns = task["folder"], task.get("columns")
    train = upload(
        client, "train.tsv", head_lines(folder / "train.tsv", train_rows, not columns), columns
    )
    dev = upload(client, "dev.tsv", head_lines(folder / "dev.tsv", dev_rows, not columns), columns)
    spec: dict[str, Any] = {
        "base_model": "all-MiniLM-L6-v2",
        "dataset": {"source": "files", "train_file_id": train, "validation_file_id": dev},
        **task["spec"],
    }
    if name.startswith("GoEmotions"):
        names = (folder / "emotions.txt").read_text().split()
        spec["label_names"] = {str(i): label for i, label in enumerate(names)}
    started = time.monotonic()
    created = client.post("/v1/jobs", json=spec)
    created.raise_for_status()
    job = wait(client, created.json()["id"])
    seconds = time.monotonic() - started
    rows = client.get(f"/v1/jobs/{job['id']}/metrics").json()
    epochs = rows["data"]
    best = job.get("best_epoch")
    data = job.get("data") or {}
    result = {
        "status": job["status"],
        "error": job.get("error"),
        "task": data.get("task"),
        "train_rows": data.get("train_rows"),
        "validation_rows": data.get("validation_rows"),
        "best_epoch": best,
        "best": next((e["metrics"] for e in epochs if e["epoch"] == best), None),
        "epochs": [
            {"epoch": e["epoch"], "eval_loss": e["eval_loss"], **e["metrics"]} for e in epochs
        ],
        "wall_seconds": round(seconds, 1),
        "reference": REFERENCES[name],
    }
    print(name, json.dumps(result), flush=True)
    return result


def markdown(report: dict[str, Any]) -> str:
    """The report as docs/glue.md's table: the best epoch's dev figures next to the reference."""
    lines = [
        "| task | train / dev rows | metric | this run (best epoch) | reference | per epoch | wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in report["tasks"].items():
        if result["status"] != "succeeded":
            lines.append(f"| {name} | | | {result['status']}: {result['error']} | | | |")
            continue
        best = result["best"] or {}
        for metric, reference in result["reference"].items():
            per_epoch = ", ".join(f"{e.get(metric, float('nan')):.3f}" for e in result["epochs"])
            lines.append(
                f"| {name} | {result['train_rows']:,} / {result['validation_rows']:,} | {metric} "
                f"| **{best.get(metric, float('nan')):.3f}** (epoch {result['best_epoch']}) "
                f"| {'—' if reference is None else f'{reference:.3f}'} | {per_epoch} "
                f"| {result['wall_seconds'] / 60:.1f} min |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument(
        "--merge", action="store_true", help="keep --out's glue.json tasks that are not re-run"
    )
    parser.add_argument("--sst2-rows", type=int, default=8000)
    parser.add_argument("--goemotions-rows", type=int, default=8000)
    parser.add_argument("--max-train-rows", type=int, help="a short run: at most this many")
    parser.add_argument("--max-dev-rows", type=int, help="a short run: at most this many")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--markdown", type=Path, help="print this glue.json as a table, only")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    limits = {
        "SST-2": args.sst2_rows,
        "GoEmotions": args.goemotions_rows,
        "GoEmotions-balanced": args.goemotions_rows,
    }
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next(
        (ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if "Model name" in ln), ""
    )
    report: dict[str, Any] = {
        "machine": f"{model_name or platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(["python", "bench/glue.py", *sys.argv[1:]]),
        "tasks": {},
    }
    previous = args.out / "glue.json" if args.out else None
    if args.merge and previous is not None and previous.exists():
        report["tasks"] = json.loads(previous.read_text())["tasks"]
    with minilm_client() as client:
        for name in args.tasks:
            rows = limits.get(name)
            if args.max_train_rows is not None:
                rows = min(rows or args.max_train_rows, args.max_train_rows)
            report["tasks"][name] = run_task(client, name, TASKS[name], rows, args.max_dev_rows)
            if args.out:  # after each task: a long run keeps what it has done
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / "glue.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    failed = [n for n, r in report["tasks"].items() if r["status"] != "succeeded"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
