"""Which dtype the networks run at: fp32, or bfloat16 where the device does it fast.

bfloat16 keeps fp32's exponent range with an 8-bit mantissa. CPUs with AMX-BF16 or AVX512-BF16 run oneDNN's
bf16 convolutions at about 2-4x their fp32 rate, and CUDA devices of compute capability 8 and up have it
natively; elsewhere bf16 is emulated and slower than fp32, so ``auto`` keeps fp32 there. The choice is the
runner's: the .cdt format and its symbols do not depend on it (decoded frames do, by rounding).

Detection reads the CPU's flags once; tests hand ``resolve`` their own flags instead.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

CHOICES = ("auto", "fp32", "bf16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo's names for the fast bf16 instructions


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.cache
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_features(flags: frozenset[str] | None = None) -> list[str]:
    """The fast-bf16 features this CPU has, by /proc/cpuinfo name (e.g. ['avx512_bf16'])."""
    flags = cpu_flags() if flags is None else flags
    return [f for f in BF16_CPU_FLAGS if f in flags]


def describe_cpu() -> str:
    """'<model name> (amx_bf16, avx512_bf16)', or '(no fast bf16)': what every speed figure names."""
    features = bf16_features()
    return f"{cpu_name()} ({', '.join(features) if features else 'no fast bf16'})"


def fast_bf16(device: str | torch.device, flags: frozenset[str] | None = None) -> bool:
    """Whether `device` runs bf16 convolutions faster than fp32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(bf16_features(flags)) and torch.backends.mkldnn.is_available()
    return False


def resolve(choice: str, device: str | torch.device = "cpu", flags: frozenset[str] | None = None) -> str:
    """'auto' | 'fp32' | 'bf16' -> 'fp32' or 'bf16' (auto: bf16 where the device does it fast)."""
    if choice not in CHOICES:
        raise ValueError(f"precision must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "auto":
        return "bf16" if fast_bf16(device, flags) else "fp32"
    return choice


def dtype_of(precision: str) -> torch.dtype:
    """A resolved precision's torch dtype."""
    return DTYPES[precision]
