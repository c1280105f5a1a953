"""The command line's malloc setting: freed activation memory is reused, not faulted in again every chunk."""

import subprocess
import sys

import pytest

PROBE = """
import resource, sys
import torch
from cdtcodec.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
def faults_of_one_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(16 * 2**20).fill_(1.0)  # 64 MB, written then freed, like one layer's activations
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_one_block()
print(kept, faults_of_one_block())
"""


def _second_block_faults(mode: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], check=True, capture_output=True, text=True)
    kept, faults = out.stdout.split()
    return kept == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_memory_is_reused_without_page_faults():
    pages = 64 * 2**20 // 4096
    kept, faults = _second_block_faults("keep")
    assert kept
    assert faults < pages // 20
    # Without the setting the same block is mapped afresh and faults in page by page (huge pages aside).
    kept, default_faults = _second_block_faults("default")
    assert not kept
    assert default_faults > 10 * max(faults, 1)
