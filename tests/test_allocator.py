"""The command line's malloc setting: freed activation memory stays with the process for the next chunk.

Whether that saves time is a benchmark's question (benchmarks/speed.py --default-malloc); this checks the
mechanism: a freed 64 MB block is handed back to the kernel by default and kept with the setting.
"""

import subprocess
import sys

import pytest

PROBE = """
import os, sys
import torch
from cdtcodec.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
block = torch.empty(16 * 2**20).fill_(1.0)  # 64 MB, written, like one layer's activations
before = resident_mb()
del block
print(kept, before - resident_mb())
"""


def _released_mb(mode: str) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], check=True, capture_output=True, text=True)
    kept, released = out.stdout.split()
    return kept == "True", float(released)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt, /proc")
def test_freed_memory_stays_with_the_process():
    kept, released = _released_mb("keep")
    assert kept
    assert released < 1.0
    kept, released = _released_mb("default")
    assert not kept
    assert released > 60.0  # glibc unmapped the block at once
