"""Serving precision: one fine-tuned MRPC model in fp32, bf16 and int8, side by side.

    HF_HUB_OFFLINE=1 python bench/train_overhead.py --epochs 3 --repeats 1 --mode fast \
        --keep-model /tmp/mrpc-model --out docs
    HF_HUB_OFFLINE=1 python bench/serving_precision.py --model /tmp/mrpc-model --out docs

Loads the model as the predict endpoint does (`app/predict/loaded_model.py`: fp32; bf16 with
the weights cast once; int8 by dynamic quantization of the linear layers) and, for each, labels
all 408 MRPC dev pairs in batches of 32 (accuracy and F1 of label "1", dev pairs per second)
and times one pair alone (median of 100 forward passes). Writes serving-precision.json.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.predict.loaded_model import LoadedModel  # noqa: E402
from bench.predict_bench import MRPC_DEV, mrpc_labelled  # noqa: E402

PRECISIONS = ("fp32", "bf16", "int8")


def evaluate(
    model: LoadedModel, pairs: list[dict[str, str]], labels: list[str], single_runs: int = 100
) -> dict[str, float]:
    predicted: list[str] = []
    started = time.perf_counter()
    for start in range(0, len(pairs), 32):
        chunk = pairs[start : start + 32]
        labelled = model.predict([p["text"] for p in chunk], [p["text_pair"] for p in chunk])
        predicted += [label for label, _ in labelled]
    seconds = time.perf_counter() - started
    hits = sum(p == t for p, t in zip(predicted, labels, strict=True))
    tp = sum(p == t == "1" for p, t in zip(predicted, labels, strict=True))
    fp = sum(p == "1" != t for p, t in zip(predicted, labels, strict=True))
    fn = sum(t == "1" != p for p, t in zip(predicted, labels, strict=True))
    one = pairs[0]
    times = []
    for _ in range(10 + single_runs):  # the first 10 warm up
        began = time.perf_counter()
        model.predict([one["text"]], [one["text_pair"]])
        times.append(time.perf_counter() - began)
    return {
        "accuracy": hits / len(labels),
        "f1": 2 * tp / (2 * tp + fp + fn),
        "pairs_per_second_batch_32": len(pairs) / seconds,
        "one_pair_ms": statistics.median(times[10:] or times) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a fine-tuned MRPC model")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--mrpc", type=Path, default=MRPC_DEV.parent, help="dir with dev.tsv")
    parser.add_argument("--pairs", type=int, help="only the first N dev pairs (smoke runs)")
    parser.add_argument("--single-runs", type=int, default=100, help="timed one-pair passes")
    args = parser.parse_args()
    pairs, labels = mrpc_labelled(args.mrpc / "dev.tsv")
    pairs, labels = pairs[: args.pairs], labels[: args.pairs]
    results = {}
    for precision in PRECISIONS:
        model = LoadedModel.load(args.model, precision)
        evaluate(model, pairs[:64], labels[:64], single_runs=0)  # warm-up
        results[precision] = evaluate(model, pairs, labels, args.single_runs)
        print(precision, results[precision], flush=True)
    fp32 = results["fp32"]
    print("| precision | dev accuracy | dev F1 | pairs/s (batch 32) | speed-up | one pair ms |")
    print("|---|---|---|---|---|---|")
    for precision, row in results.items():
        print(
            f"| {precision} | {row['accuracy']:.4f} | {row['f1']:.4f} "
            f"| {row['pairs_per_second_batch_32']:.1f} "
            f"| {row['pairs_per_second_batch_32'] / fp32['pairs_per_second_batch_32']:.2f}x "
            f"| {row['one_pair_ms']:.2f} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving-precision.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
