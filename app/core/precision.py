"""Number formats for training and serving: bf16 where the hardware computes it natively."""

from typing import Literal

Precision = Literal["auto", "fp32", "bf16"]
ServingPrecision = Literal["auto", "fp32", "bf16", "int8"]


def bf16_is_native() -> bool:
    """True on a CUDA GPU with bf16 support, or a CPU with AMX matrix units.

    AVX512-BF16 alone is not enough: on such a CPU (docs/benchmarks.md) a bf16 matmul ran at
    half the fp32 rate and bf16 autocast trained at 0.70x the fp32 speed."""
    import torch  # here: settings import this module, and the Celery parent never loads torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def use_bf16(requested: Precision) -> bool:
    """ "auto" means bf16 only where it is native: elsewhere bf16 is slower than fp32."""
    return requested == "bf16" or (requested == "auto" and bf16_is_native())


def serving_precision(requested: ServingPrecision) -> str:
    """The format a model is served in: "auto" is bf16 where native, else fp32."""
    if requested == "auto":
        return "bf16" if bf16_is_native() else "fp32"
    return requested
