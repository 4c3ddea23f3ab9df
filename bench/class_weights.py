"""Balanced class weights on imbalanced data, through the service, in one run.

    HF_HUB_OFFLINE=1 python bench/class_weights.py --train-rows 1000 --positives 0.1 --out docs

all-MiniLM-L6-v2 is fine-tuned on a sample of GLUE SST-2 train with `--positives` of its rows
positive, twice: with the service's defaults, and with `"class_weights": "balanced"`. Both
models are then evaluated on the balanced SST-2 dev split by a batch prediction job, which gives
each class's recall and F1. Writes class-weights.json to --out.
"""

import argparse
import csv
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.batch_predict import minilm_client  # noqa: E402

SST2 = ROOT.parent / "shared" / "data" / "glue" / "SST-2"


def read(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]


def tsv(rows: list[list[str]]) -> bytes:
    return ("sentence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in rows)).encode()


def wait(client: httpx.Client, path: str) -> dict[str, Any]:
    while True:
        item = client.get(path).json()
        if item["status"] in ("succeeded", "failed", "cancelled"):
            assert item["status"] == "succeeded", item
            return dict(item)
        time.sleep(2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=1000)
    parser.add_argument("--positives", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--dev-rows", type=int, default=872)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rng = random.Random(0)
    train = read(SST2 / "train.tsv")
    rng.shuffle(train)
    n_pos = round(args.train_rows * args.positives)
    sample = [r for r in train if r[1] == "1"][:n_pos] + [r for r in train if r[1] == "0"][
        : args.train_rows - n_pos
    ]
    rng.shuffle(sample)
    dev = read(SST2 / "dev.tsv")[: args.dev_rows]
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(sys.argv),
        "train_rows": len(sample),
        "train_positives": n_pos,
        "dev_rows": len(dev),
    }
    with minilm_client() as client:
        train_id = client.post("/v1/files", files={"file": ("train.tsv", tsv(sample))}).json()["id"]
        dev_id = client.post("/v1/files", files={"file": ("dev.tsv", tsv(dev))}).json()["id"]
        for variant, weights in (("default", None), ("balanced", "balanced")):
            spec = {
                "base_model": "all-MiniLM-L6-v2",
                "dataset": {
                    "source": "files",
                    "train_file_id": train_id,
                    "validation_file_id": dev_id,
                },
                "text_column": "sentence",
                "label_column": "label",
                "hyperparameters": {
                    "num_train_epochs": args.epochs,
                    "learning_rate": 1e-4,
                    "per_device_train_batch_size": 16,
                    "per_device_eval_batch_size": 64,
                    "class_weights": weights,
                },
                "metrics": ["accuracy", "f1"],
            }
            started = time.monotonic()
            job = client.post("/v1/jobs", json=spec).json()
            job = wait(client, f"/v1/jobs/{job['id']}")
            trained = time.monotonic() - started
            batch = client.post(
                f"/v1/models/{job['model_id']}/batch-predictions",
                json={"file_id": dev_id},
            ).json()
            batch = wait(client, f"/v1/batch-predictions/{batch['id']}")
            result = batch["result"]
            report[variant] = {
                "train_seconds": round(trained, 1),
                "best_epoch": job["best_epoch"],
                "metrics": result["metrics"],
                "per_label": result["per_label"],
                "macro_f1": sum(v["f1"] for v in result["per_label"].values()) / 2,
            }
            print(variant, json.dumps(report[variant], indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "class-weights.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
