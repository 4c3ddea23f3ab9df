"""glibc malloc settings for the training process: keep freed memory instead of returning it.

Every training step allocates and frees the same activation and gradient buffers. With glibc's
defaults, large ones are mmap-ed and unmapped each time and the heap top is trimmed, so the
next step takes page faults and zero-fills fresh pages again. Raising the mmap and trim
thresholds keeps those pages in the process (the memory stays at its peak, which a training
process reaches every step anyway).
"""

import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger(__name__)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems
TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Apply the thresholds; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if not applied:
        logger.warning("could not set malloc thresholds; training runs with the defaults")
    return applied
