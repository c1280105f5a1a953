"""Process-wide malloc settings for the command line and the benchmarks (a library import changes nothing).

glibc hands every block over its mmap threshold (at most 32 MB) to the kernel on free, and trims the heap
whenever its free top passes 128 kB, so each chunk's activations arrive as fresh pages that fault and are
zeroed on first touch. On this project's CPU that page work cost more than the arithmetic of the memory-bound
layers (norms, copies, softmax): decoding 17 frames of 640x480 on cdt-tiny took 19.1-19.2 s as it was and
14.5 s with freed memory kept (encode 3.9-4.4 s -> 2.8 s), for a peak RSS of 2.57 GB instead of 2.02 GB.
Peak memory still does not grow with the stream's length (benchmarks/stream_memory.py at 480x480: decode
1.78 GB for 17 frames, 1.46 GB for 65), though reuse is up to malloc's free lists, so it varies by run.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and never give it back; True where glibc took the settings."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # musl and other C libraries answer 0 (not supported); then nothing changed.
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
