"""How much memory an encode or a decode will take, known before it allocates, and the limit it must fit.

A .cdt header (or an input video) fixes the frame size and the sampling steps, and the model fixes the
widths, so the peak is known up front: a file declaring one 8192x8192 frame is refused with a message
instead of allocating until the machine runs out. The estimates are linear fits to peak RSS measured with
cdt-tiny (5 frames at 128x128, 256x256 and 512x512; 1 and 3 sampling steps; this project's allocator
settings), scaled by the model's widths and rounded up:

    decode 404 / 622 / 1,433 MB at 1 step, 446 / 829 / 2,182 MB at 3 steps
    encode 451 / 759 MB at 256x256 / 512x512

The limit is the machine's physical memory unless the caller's `max_memory` (the command line's --max-memory) or
CDTCODEC_MAX_MEMORY says otherwise.
"""

from __future__ import annotations

import os
import re

from cdtcodec.config import CDTConfig
from cdtcodec.errors import ParamError

LIMIT_ENV = "CDTCODEC_MAX_MEMORY"
PROCESS_BYTES = 400 << 20  # the interpreter, torch and the codec before the first frame (measured ~330 MB)
# float32 values held per coded pixel, per unit of network width (see the fit in the module docstring)
_DECODE_CONTEXT_PER_WIDTH = 20  # the context network: its activations and its one feature cache
_DECODE_DENOISER_PER_WIDTH = 24  # the denoiser: its activations plus one feature cache per sampling step
_ENCODE_PER_WIDTH = 28
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class MemoryLimitExceeded(ParamError):
    """The work would need more memory than the limit allows; the message is one line and names the parameter
    that raises it (`max_memory`; the command line says --max-memory)."""


def _weights_bytes(cfg: CDTConfig) -> int:
    # parameters grow with the square of the widths; cdt-tiny (16/16) has 7.6 M, held once in float32
    return 4 * 7_600_000 * (cfg.context_dim * cfg.unet_dim) // (16 * 16)


def decode_bytes(cfg: CDTConfig, coded_height: int, coded_width: int, steps: int) -> int:
    """Estimated peak resident memory of a streaming decode at that coded size (bytes)."""
    per_pixel = 4 * (_DECODE_CONTEXT_PER_WIDTH * cfg.context_dim
                     + _DECODE_DENOISER_PER_WIDTH * cfg.unet_dim * (1 + max(1, steps)))
    return PROCESS_BYTES + _weights_bytes(cfg) + per_pixel * coded_height * coded_width


def encode_bytes(cfg: CDTConfig, coded_height: int, coded_width: int) -> int:
    """Estimated peak resident memory of a streaming encode at that coded size (bytes)."""
    return PROCESS_BYTES + _weights_bytes(cfg) + 4 * _ENCODE_PER_WIDTH * cfg.context_dim * coded_height * coded_width


def parse_size(text: str) -> int:
    """'16G', '800M', '1.5g', '123456' (bytes) -> bytes; ValueError otherwise."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([kmgt]?)i?b?\s*", str(text).lower())
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"invalid memory size {text!r} (use e.g. 16G, 800M or a number of bytes)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def memory_limit(explicit: int | None = None) -> tuple[int | None, str]:
    """(limit in bytes or None for none, where it came from): the argument, else the environment, else the
    machine's physical memory."""
    if explicit is not None:
        return explicit, "asked for"
    if os.environ.get(LIMIT_ENV):
        return parse_size(os.environ[LIMIT_ENV]), LIMIT_ENV
    return physical_memory(), "the machine's memory"


def _gb(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def check_memory(needed: int, what: str, explicit: int | None = None, share: int = 1) -> None:
    """MemoryLimitExceeded unless `needed` bytes fit the limit (see memory_limit); `what` leads the message.
    `share`: the work runs beside others (that many in all, a corpus's jobs) and gets that share of the limit."""
    limit, source = memory_limit(explicit)
    if limit is not None and needed * max(1, share) > limit:
        part = "" if share <= 1 else f"its 1/{share} share ({_gb(limit // share)}, one of {share} jobs) of "
        raise MemoryLimitExceeded("max_memory", f" or {LIMIT_ENV}=SIZE if this machine can hold it",
                                  before=f"{what} needs about {_gb(needed)} of memory, more than {part}the limit "
                                         f"of {_gb(limit)} ({source}); raise it with ")
