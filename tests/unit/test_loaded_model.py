"""The forward pass of a served model: length-sorted slices and the serving precisions."""

from pathlib import Path

import pytest

from app.predict import loaded_model
from app.predict.loaded_model import LoadedModel

TEXTS = [f"word {'and more ' * (i % 7)}{i}" for i in range(37)]  # lengths vary; > 2 slices


def test_a_batch_in_sorted_slices_labels_each_input_as_it_would_alone(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = LoadedModel.load(tiny_model_dir)
    monkeypatch.setattr(loaded_model, "SLICE", 8)
    together = model.predict(TEXTS, None)
    alone = [model.predict([text], None)[0] for text in TEXTS]
    assert [label for label, _ in together] == [label for label, _ in alone]
    for (_, scores), (_, reference) in zip(together, alone, strict=True):
        assert scores == pytest.approx(reference, abs=1e-5)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precisions_answer_in_the_same_shape(tiny_model_dir: Path, precision: str) -> None:
    model = LoadedModel.load(tiny_model_dir, precision)
    labelled = model.predict(TEXTS[:5], None)
    assert model.precision == precision
    assert len(labelled) == 5
    for label, scores in labelled:
        assert label in model.labels
        assert set(scores) == set(model.labels)
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-2)
