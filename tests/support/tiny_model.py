"""A tiny random BERT (2 layers, small vocabulary) that trains in seconds on a CPU."""

from pathlib import Path

WORDS = [
    "good",
    "great",
    "fine",
    "happy",
    "love",
    "nice",
    "excellent",
    "bad",
    "awful",
    "sad",
    "hate",
    "terrible",
    "poor",
    "boring",
    "the",
    "a",
    "movie",
    "film",
    "was",
    "is",
    "it",
    "this",
    "and",
    "but",
    "not",
    "very",
    "plot",
    "actors",
    "story",
]


def build_tiny_model(folder: Path) -> Path:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.model_max_length = 64
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def sentiment_rows(count: int, seed: int = 0) -> list[dict[str, str]]:
    """An easy, learnable single-sentence task: positive words -> 'pos', negative -> 'neg'."""
    import random

    rng = random.Random(seed)
    positive = ["good", "great", "happy", "love", "nice", "excellent"]
    negative = ["bad", "awful", "sad", "hate", "terrible", "poor"]
    rows = []
    for index in range(count):
        label = "pos" if index % 2 == 0 else "neg"
        word = rng.choice(positive if label == "pos" else negative)
        filler = rng.sample(["the", "movie", "was", "very", "plot", "story", "it"], 3)
        rows.append({"sentence": " ".join([*filler[:2], word, filler[2]]), "label": label})
    return rows
