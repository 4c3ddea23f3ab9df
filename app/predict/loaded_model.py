"""A trained model held in memory, and the forward pass that labels a batch of inputs."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    labels: list[str]

    @classmethod
    def load(cls, folder: Path) -> "LoadedModel":
        # local_files_only: a trained model is always a folder of ours; safetensors only.
        tokenizer = AutoTokenizer.from_pretrained(
            folder, local_files_only=True, trust_remote_code=False
        )
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, local_files_only=True, use_safetensors=True, trust_remote_code=False
        )
        model.eval()
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        return cls(model=model, tokenizer=tokenizer, labels=labels)

    def predict(
        self, texts: list[str], pairs: list[str] | None
    ) -> list[tuple[str, dict[str, float]]]:
        """Label a batch: tokenized together with padding to its longest input."""
        encoded = self.tokenizer(texts, pairs, truncation=True, padding=True, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(**encoded).logits
        probabilities = torch.softmax(logits.float(), dim=-1).tolist()
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
