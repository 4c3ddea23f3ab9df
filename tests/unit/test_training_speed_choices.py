"""The job's speed choices reach the Trainer: length-grouped batches and bf16 autocast."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from app.core import precision
from app.core.config import Settings
from app.jobs.schemas import Hyperparameters
from worker.training import training_arguments


def arguments(tmp_path: Path, **hyperparameters: object) -> object:
    return training_arguments(
        Settings(data_dir=tmp_path), tmp_path / "checkpoints", Hyperparameters(**hyperparameters)
    )


def test_defaults_group_by_length_and_pick_precision_from_the_hardware(
    tmp_path: Path,
) -> None:
    args = arguments(tmp_path)
    assert args.train_sampling_strategy == "group_by_length"  # type: ignore[attr-defined]
    assert args.bf16 is precision.bf16_is_native()  # type: ignore[attr-defined]


def test_exact_recipe_turns_both_off(tmp_path: Path) -> None:
    args = arguments(tmp_path, group_by_length=False, precision="fp32")
    assert args.train_sampling_strategy == "random"  # type: ignore[attr-defined]
    assert args.bf16 is False  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("requested", "native", "expected"),
    [
        ("auto", True, True),
        ("auto", False, False),  # emulated bf16 would be slower than fp32
        ("fp32", True, False),
        ("bf16", False, True),  # asked for explicitly: honoured
    ],
)
def test_use_bf16(
    monkeypatch: pytest.MonkeyPatch, requested: precision.Precision, native: bool, expected: bool
) -> None:
    monkeypatch.setattr(precision, "bf16_is_native", lambda: native)
    assert precision.use_bf16(requested) is expected


@pytest.fixture
def on_a_cpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    precision.bf16_is_native.cache_clear()
    yield
    precision.bf16_is_native.cache_clear()  # the next test measures this machine again


@pytest.mark.parametrize(
    ("amx", "speedup", "expected"),
    [
        (True, 0.0, True),  # AMX: native without measuring
        (False, 0.5, False),  # AVX512-BF16 on the first benchmark machine: half fp32's rate
        (False, 1.4, False),  # under the margin
        (False, 2.1, True),  # AVX512-BF16 on the AMD EPYC machine
    ],
)
def test_native_bf16_on_a_cpu_is_amx_or_a_measured_win(
    monkeypatch: pytest.MonkeyPatch, on_a_cpu: None, amx: bool, speedup: float, expected: bool
) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(precision, "bf16_matmul_speedup", lambda: speedup)
    assert precision.bf16_is_native() is expected
    monkeypatch.setattr(precision, "bf16_matmul_speedup", lambda: 1 / 0)
    assert precision.bf16_is_native() is expected  # measured once per process


def test_the_matmul_probe_measures_a_ratio() -> None:
    speedup = precision.bf16_matmul_speedup(size=64, repeats=2)
    assert 0 < speedup < 100


def test_an_unknown_precision_is_rejected() -> None:
    with pytest.raises(ValueError, match="precision"):
        Hyperparameters(precision="fp8")  # type: ignore[arg-type]
