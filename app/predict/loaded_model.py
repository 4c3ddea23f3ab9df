"""A trained model held in memory, and the forward pass that labels a batch of inputs."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

# A forward pass runs over at most this many inputs of similar length: a batch is sorted by
# length and cut into such slices, so short inputs are not padded to the longest one.
SLICE = 16


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    labels: list[str]
    precision: str = "fp32"

    @classmethod
    def load(cls, folder: Path, precision: str = "fp32") -> "LoadedModel":
        """Load for inference in fp32, bf16 (weights cast once) or int8 (dynamic quantization
        of the linear layers)."""
        # local_files_only: a trained model is always a folder of ours; safetensors only.
        tokenizer = AutoTokenizer.from_pretrained(
            folder, local_files_only=True, trust_remote_code=False
        )
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, local_files_only=True, use_safetensors=True, trust_remote_code=False
        )
        model.eval()
        if precision == "bf16":
            model = model.to(torch.bfloat16)
        elif precision == "int8":
            from torch.ao.quantization import quantize_dynamic

            model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        return cls(model=model, tokenizer=tokenizer, labels=labels, precision=precision)

    def predict(
        self, texts: list[str], pairs: list[str] | None
    ) -> list[tuple[str, dict[str, float]]]:
        """Label a batch: tokenized together, then run in length-sorted slices, each padded
        to its own longest input."""
        if len(texts) == 1:  # nothing to sort or pad
            probabilities = self._forward(
                self.tokenizer(texts, pairs, truncation=True, return_tensors="pt")
            )
        else:
            probabilities = self._forward_sorted(texts, pairs)
        results = []
        for row in probabilities:
            best = max(range(len(row)), key=row.__getitem__)
            results.append(
                (
                    self.labels[best],
                    {label: float(p) for label, p in zip(self.labels, row, strict=True)},
                )
            )
        return results

    def _forward(self, batch: Any) -> list[list[float]]:
        """Per input: each label's probability (softmax; sigmoid for multi-label heads), or
        the score itself for a regression head."""
        with torch.inference_mode():
            logits = self.model(**batch).logits.float()
        problem = getattr(self.model.config, "problem_type", None)
        if problem == "regression":
            return list(logits.tolist())
        if problem == "multi_label_classification":
            return list(torch.sigmoid(logits).tolist())
        return list(torch.softmax(logits, dim=-1).tolist())

    def _forward_sorted(self, texts: list[str], pairs: list[str] | None) -> list[list[float]]:
        encoded = self.tokenizer(texts, pairs, truncation=True)
        columns = list(encoded.keys())
        order = sorted(range(len(texts)), key=lambda i: len(encoded["input_ids"][i]))
        probabilities: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), SLICE):
            rows = order[start : start + SLICE]
            features = [{name: encoded[name][i] for name in columns} for i in rows]
            scores = self._forward(self.tokenizer.pad(features, return_tensors="pt"))
            for row, row_scores in zip(rows, scores, strict=True):
                probabilities[row] = row_scores
        return probabilities
