"""Rate control: the quantizer step at which a whole .cdt file meets a target rate (--target-kbps, --target-bpp).

x264 and x265 users ask for a bit rate, not a quantizer. The encoder's latents are computed once and kept in a
LatentSpool (an anonymous temporary file, so memory stays flat in the video's length); only quantization and
entropy coding are repeated, once per trial step.

Sizes are exact, not modelled. A file is its fixed parts (header, index, trailer, audio records) plus one record
per chunk, and chunk i's payload depends only on its own symbols and on the chunks just before it
(bitstream/chunk_coding.py), so FileSizer codes chunks one by one and adds up their real record sizes; the file
then written at the chosen step has exactly the size the search saw (tests/test_rate_control.py checks it).
For a long video (more than SAMPLE_CHUNKS chunks) the search runs first on an evenly spread sample of chunks
(their mean record size times the number of chunks), then goes on from there with whole-file sizes: the sample
comes close in a few cheap trials, the whole-file trials (usually one or two) make it exact.

With per-channel steps (a quality scale with gain vectors, quantize.py) the search moves the global step and the
channel steps follow it: global step x the gain vector interpolated between the levels' (QualityScale.steps_at),
so the size stays a continuous function of one variable. The search works on log(step) against log(bytes), where
the curve is close to a straight line: secant steps, kept inside the bracket once one trial lies above the target
and one below (regula falsi, Illinois variant), until a size is within `tolerance` (2%) of the target. A target
the step range (STEP_RANGE, the prior's 2^-12 .. 2^12) cannot reach is encoded at that bound, as x264 and x265 do
with a bit rate they cannot meet, and the result says so (Choice.reached), so the caller can warn with the rate it
got.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Callable, Sequence

import numpy as np

from bitstream.chunk_coding import chunk_coder
from bitstream.writer import chunk_record_bytes, file_bytes
from cdtcodec.errors import ParamError
from cdtcodec.rate.quantize import DEFAULT_SCALE, QualityScale, quantize

STEP_RANGE = (2.0 ** -12, 2.0 ** 12)  # the prior's range (bitstream/prior_tables.py STEP_Q_MIN .. STEP_Q_MAX)
TOLERANCE = 0.02  # the search stops within 2% of the target
SAMPLE_CHUNKS = 32  # beyond this many chunks the search starts on a sample of them
MAX_TRIALS = 24  # per stage; the secant needs 3 to 6 on ordinary video
_MAX_MOVE = math.log(8.0)  # an extrapolated trial moves the step by at most 3 octaves
_SLOPE_LIMITS = (-8.0, -0.25)  # d log(bytes) / d log(step) assumed, before two trials give it
UNITS = ("kbps", "bpp")


class RateControlError(ValueError):
    """A rate-control request that cannot be honoured; the message is one line."""


class BadTarget(ParamError, RateControlError):
    """A target rate out of its range; the message names the parameter (target_kbps or target_bpp)."""


@dataclass(frozen=True)
class RateTarget:
    """A whole-file rate: kbps (bytes * 8 / duration / 1000) or bpp (bytes * 8 / (frames * width * height)),
    the same definitions as the encode summary's, audio and container included."""

    unit: str
    value: float

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ValueError(f"rate unit must be one of {', '.join(UNITS)}, got {self.unit!r}")
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)) or not (
                math.isfinite(self.value) and self.value > 0):
            raise BadTarget(self.param, f" must be a finite number > 0, got {self.value!r}")

    @property
    def param(self) -> str:
        return f"target_{self.unit}"

    def bytes_for(self, frames: int, width: int, height: int, fps: Fraction) -> float:
        """The file size in bytes that this target means for a video of that size and length."""
        if self.unit == "kbps":
            return self.value * 1000 / 8 * frames / float(fps)
        return self.value * frames * width * height / 8

    def rate_of(self, size: float, frames: int, width: int, height: int, fps: Fraction) -> float:
        """A file size in this target's unit."""
        return self.value * size / self.bytes_for(frames, width, height, fps)

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit}"


class LatentSpool:
    """The encoder's latent chunks (float32, as the encoder gave them), kept in an anonymous temporary file: gone
    when closed or when the process ends however it ends, and served back from the page cache while it fits."""

    def __init__(self, directory: str | None = None):
        self._f = tempfile.TemporaryFile(dir=directory, prefix="cdtcodec-latents-")
        self._entries: list[tuple[int, tuple[int, ...]]] = []
        self._end = 0

    def append(self, latent) -> None:
        """One chunk's latent, (C, t, h, w), a torch tensor or an array."""
        if hasattr(latent, "detach"):
            latent = latent.detach().float().cpu().numpy()
        a = np.ascontiguousarray(latent, dtype=np.float32)
        self._f.seek(self._end)
        self._f.write(a.tobytes())
        self._entries.append((self._end, a.shape))
        self._end += a.nbytes

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, i: int):
        import torch

        offset, shape = self._entries[i]
        self._f.seek(offset)
        data = self._f.read(4 * math.prod(shape))
        return torch.from_numpy(np.frombuffer(data, dtype=np.float32).reshape(shape).copy())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "LatentSpool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FileSizer:
    """Exact sizes of the file that `header` (its final frame counts; its steps are replaced) describes, at any
    global quantizer step (the channel steps from `scale`), from the spooled latents and the size of the records
    that do not depend on the step (audio, frame times), without writing it."""

    def __init__(self, header, spool: LatentSpool, prior=None, other_records: int = 0,
                 scale: QualityScale = DEFAULT_SCALE):
        if len(spool) != header.num_chunks:
            raise ValueError(f"{len(spool)} chunks spooled, the header has {header.num_chunks}")
        self.header, self.spool, self.prior, self.other_records = header, spool, prior, other_records
        self.scale = scale

    def steps_at(self, step: float) -> tuple[float, ...]:
        """The header's quantizer steps at global step `step`."""
        return self.scale.steps_at(float(step))

    @property
    def bounds(self) -> tuple[float, float]:
        """The global steps whose channel steps all stay in STEP_RANGE."""
        lo, hi = self.scale.gain_spread()
        return STEP_RANGE[0] / lo, STEP_RANGE[1] / hi

    def header_at(self, step: float):
        return replace(self.header, quant_step=self.steps_at(step))

    def record_bytes(self, step: float, indices: Sequence[int]) -> list[int]:
        """The record size of each chunk in `indices` (ascending) at global step `step`."""
        steps = self.steps_at(step)
        coder = chunk_coder(self.header_at(step), self.prior)
        back = coder.context_chunks
        symbols: dict[int, np.ndarray] = {}
        out = []
        for i in indices:
            for j in [j for j in symbols if j < i - back]:
                del symbols[j]  # a sweep over ascending chunks keeps only the context it still needs
            for j in range(max(0, i - back), i + 1):
                if j not in symbols:
                    symbols[j] = quantize(self.spool[j], steps)
            payload = coder.payload(i, symbols[i], [symbols[j] for j in range(max(0, i - back), i)])
            out.append(chunk_record_bytes(len(payload)))
        return out

    def total(self, step: float) -> int:
        """The file's size in bytes at `step`: every chunk coded."""
        chunks = sum(self.record_bytes(step, range(len(self.spool))))
        return file_bytes(self.header_at(step), chunks, self.other_records)

    def estimate(self, step: float, sample: Sequence[int]) -> float:
        """The file's size at `step` from the chunks in `sample`: their mean record size for every chunk."""
        mean = float(np.mean(self.record_bytes(step, sample)))
        return file_bytes(self.header_at(step), 0, self.other_records) + mean * len(self.spool)


@dataclass(frozen=True)
class Trial:
    """One size seen by the search: the whole file (exact) or an estimate from `chunks` of its chunks."""

    step: float
    bytes: float
    target: float
    whole: bool
    chunks: int


@dataclass(frozen=True)
class Search:
    """What one stage of the search found: the trial nearest the target, all its trials, and whether a
    target it did not reach lies beyond the step range ('' when reached or not yet known)."""

    best: Trial
    trials: tuple[Trial, ...]
    reached: bool
    beyond: str  # "" | "above" (the target is above the largest size) | "below" (below the smallest)
    slope: float  # d log(bytes) / d log(step) near the target, from the last trials


def _slope(points: list[tuple[float, float]], default: float) -> float:
    if len(points) >= 2:
        (x0, y0), (x1, y1) = points[-2], points[-1]
        if abs(x1 - x0) > 1e-9 and y1 != y0:
            return min(max((y1 - y0) / (x1 - x0), _SLOPE_LIMITS[0]), _SLOPE_LIMITS[1])
    return default


def search(size_of: Callable[[float], float], target: float, start: float, *, whole: bool, chunks: int,
           tolerance: float = TOLERANCE, bounds: tuple[float, float] = STEP_RANGE, slope: float = -1.0,
           max_trials: int = MAX_TRIALS, on_trial: Callable[[Trial], None] | None = None) -> Search:
    """The step whose size_of(step) (bytes, falling as the step grows) is within `tolerance` of `target`."""
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    x = min(max(math.log(start), lo), hi)
    trials: list[Trial] = []
    points: list[tuple[float, float]] = []  # (log step, log(bytes / target))
    above = below = None  # bracket ends [x, y]: above the target (step too small), below it
    kept = ""  # the bracket end kept by the last regula falsi step (Illinois: halve it when kept twice)
    beyond = ""
    for _ in range(max_trials):
        size = float(size_of(math.exp(x)))
        trial = Trial(math.exp(x), size, target, whole, chunks)
        trials.append(trial)
        if on_trial:
            on_trial(trial)
        y = math.log(max(size, 1e-300) / target)
        points.append((x, y))
        if abs(size / target - 1) <= tolerance:
            break
        if y > 0:
            above, side = [x, y], "above"
        else:
            below, side = [x, y], "below"
        if above and below:
            if kept == ("below" if side == "above" else "above"):  # the other end stayed put twice
                end = below if side == "above" else above
                end[1] /= 2
            kept = "below" if side == "above" else "above"
            if abs(below[0] - above[0]) < 1e-3:
                break  # the size jumps over the target within 0.1% of the step: take the nearer side
            x = above[0] - above[1] * (below[0] - above[0]) / (below[1] - above[1])
            continue
        if y > 0 and x >= hi:
            beyond = "below"
            break
        if y < 0 and x <= lo:
            beyond = "above"
            break
        move = -y / _slope(points, slope)
        x = min(max(x + min(max(move, -_MAX_MOVE), _MAX_MOVE), lo), hi)
    best = min(trials, key=lambda t: abs(math.log(max(t.bytes, 1e-300) / target)))
    reached = abs(best.bytes / target - 1) <= tolerance
    return Search(best, tuple(trials), reached, "" if reached else beyond, _slope(points, slope))


@dataclass(frozen=True)
class Choice:
    """The (global) step rate control chose, the file's quantizer steps there and its exact size."""

    step: float
    steps: tuple[float, ...]
    bytes: int
    target: float
    reached: bool  # within the tolerance
    beyond: str  # "" | "above" | "below": the target lies beyond what the step range reaches
    trials: tuple[Trial, ...]

    def missed(self, target: RateTarget, rate: float) -> str:
        """The warning for a target not reached, `rate` the one got (in the target's unit)."""
        got = f"{rate:.4g} {target.unit} at step {self.step:g}"
        if self.beyond == "above":
            return (f"target {target} is above the highest rate this video reaches ({got}, the smallest step); "
                    "encoded there")
        if self.beyond == "below":
            return (f"target {target} is below the lowest rate this video reaches ({got}, the largest step: the "
                    "latents are all but zero); encoded there")
        return f"target {target}: the nearest rate the step search found is {got}; encoded there"


def choose_step(sizer: FileSizer, target: float, start: float, *, tolerance: float = TOLERANCE,
                on_trial: Callable[[Trial], None] | None = None) -> Choice:
    """The quantizer step for a file of `target` bytes (see the module docstring); `start`: the first guess."""
    n = len(sizer.spool)
    trials: tuple[Trial, ...] = ()
    slope = -1.0
    if n > SAMPLE_CHUNKS:
        sample = sorted({int(round(v)) for v in np.linspace(0, n - 1, SAMPLE_CHUNKS)})
        first = search(lambda s: sizer.estimate(s, sample), target, start, whole=False, chunks=len(sample),
                       tolerance=tolerance / 2, bounds=sizer.bounds, on_trial=on_trial)
        start, slope, trials = first.best.step, first.slope, first.trials
    final = search(sizer.total, target, start, whole=True, chunks=n, tolerance=tolerance, slope=slope,
                   bounds=sizer.bounds, on_trial=on_trial)
    return Choice(final.best.step, sizer.steps_at(final.best.step), int(final.best.bytes), target, final.reached,
                  final.beyond, trials + final.trials)
