"""The Hugging Face course recipe, run by hand: the baseline of bench/train_overhead.py.

    python bench/course_recipe.py --model DIR --mrpc DIR --epochs 1 --out result.json

AutoModelForSequenceClassification + TrainingArguments + Trainer + compute_metrics on GLUE
MRPC, evaluating every epoch, dynamic padding; seeded before the model is built, as the
service does, so that both start from the same classifier head.
"""

import argparse
import csv
import json
import time
from pathlib import Path

import datasets
import evaluate
import numpy as np
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

METRICS = Path(__file__).resolve().parents[1] / "worker" / "metric_modules"


def read_split(path: Path, limit: int | None = None) -> datasets.Dataset:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = rows[0], rows[1:][:limit]
    columns = {name: [row[i] for row in body] for i, name in enumerate(header)}
    return datasets.Dataset.from_dict(
        {
            "sentence1": columns["#1 String"],
            "sentence2": columns["#2 String"],
            "label": [int(v) for v in columns["Quality"]],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--mrpc", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--train-rows", type=int, help="only the first N training pairs")
    parser.add_argument("--output-dir", default="/tmp/course-recipe")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    raw = {
        "train": read_split(args.mrpc / "train.tsv", args.train_rows),
        "validation": read_split(args.mrpc / "dev.tsv"),
    }

    def tokenize_function(example: dict) -> dict:
        return tokenizer(example["sentence1"], example["sentence2"], truncation=True)

    tokenized = {k: v.map(tokenize_function, batched=True) for k, v in raw.items()}
    data_collator = DataCollatorWithPadding(tokenizer=tokenizer)
    set_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2)
    accuracy = evaluate.load(str(METRICS / "accuracy"))
    f1 = evaluate.load(str(METRICS / "f1"))

    def compute_metrics(eval_preds: tuple) -> dict:
        logits, labels = eval_preds
        predictions = np.argmax(logits, axis=-1)
        return {
            **accuracy.compute(predictions=predictions, references=labels),
            **f1.compute(predictions=predictions, references=labels),
        }

    training_args = TrainingArguments(
        args.output_dir,
        eval_strategy="epoch",
        save_strategy="no",
        num_train_epochs=args.epochs,
        seed=args.seed,
        report_to="none",
        disable_tqdm=True,
    )
    trainer = Trainer(
        model,
        training_args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        data_collator=data_collator,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    train_started = time.perf_counter()
    trainer.train()  # evaluates at each epoch's end, as the course does
    ended = time.perf_counter()
    metrics = [entry for entry in trainer.state.log_history if "eval_accuracy" in entry][-1]
    args.out.write_text(
        json.dumps(
            {
                "wall_seconds": ended - started,
                "train_and_eval_seconds": ended - train_started,
                "accuracy": metrics["eval_accuracy"],
                "f1": metrics["eval_f1"],
                "train_samples": len(tokenized["train"]) * args.epochs,
            }
        )
    )


if __name__ == "__main__":
    main()
