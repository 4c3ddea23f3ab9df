"""Number formats for training and serving: bf16 where the hardware computes it fast."""

import time
from functools import lru_cache
from typing import Literal

Precision = Literal["auto", "fp32", "bf16"]
ServingPrecision = Literal["auto", "fp32", "bf16", "int8"]

# On a CPU, bf16 counts as native when a bf16 matmul runs at least this much faster than fp32.
# Measured (docs/benchmarks.md): an Intel CPU with AVX512-BF16 and no AMX, 0.5x (bf16 training
# 0.70x); an AMD EPYC with AVX512-BF16, 2.1x (bf16 training 1.38x); AMX is several times
# faster. The margin keeps the choice the same from one process to the next.
BF16_MIN_SPEEDUP = 1.5
PROBE_SIZE = 512
PROBE_REPEATS = 8


@lru_cache
def bf16_is_native() -> bool:
    """True on a CUDA GPU with bf16 support, on a CPU with AMX matrix units, and on any other
    CPU where a bf16 matmul, measured once per process, beats fp32 by BF16_MIN_SPEEDUP."""
    import torch  # here: settings import this module, and the Celery parent never loads torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        return True
    return bf16_matmul_speedup() >= BF16_MIN_SPEEDUP


def bf16_matmul_speedup(size: int = PROBE_SIZE, repeats: int = PROBE_REPEATS) -> float:
    """How many times faster a square bf16 matmul runs than an fp32 one on this CPU (best of
    `repeats`, about 0.1 s in all)."""
    import torch

    def best_seconds(dtype: torch.dtype) -> float:
        a = torch.randn(size, size).to(dtype)
        b = torch.randn(size, size).to(dtype)
        a @ b  # warm: the first call picks and loads the kernels
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - started)
        return best

    return best_seconds(torch.float32) / best_seconds(torch.bfloat16)


def use_bf16(requested: Precision) -> bool:
    """ "auto" means bf16 only where it is native: elsewhere bf16 is slower than fp32."""
    return requested == "bf16" or (requested == "auto" and bf16_is_native())


def serving_precision(requested: ServingPrecision) -> str:
    """The format a model is served in: "auto" is bf16 where native, else fp32."""
    if requested == "auto":
        return "bf16" if bf16_is_native() else "fp32"
    return requested
