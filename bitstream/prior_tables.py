"""The integer prior's frozen numbers and coding tables (coder `prior`, format version 2): the quantizer step in
fixed point, and the frequency table of each symbol from the network's integer predictions.

The network (prior_net.py) gives each symbol a mean and log2 of a scale in latent units; table_ids maps them with
the step of the symbol's channel to a centre symbol, a mean offset in eighths of a symbol and an index into a
frozen table of scales (eighth-octave steps). (scale index, offset) names one of SCALES * 8 frequency tables,
built from the frozen EXP2_Q30 table exactly as the `range` coder builds its tables (entropy.py), with integer
arithmetic and single correctly rounded binary64 operations only. Every number here is part of the format
(docs/bitstream.md).
"""

from __future__ import annotations

import math
from functools import lru_cache

import constriction
import numpy as np

from . import spec
from .errors import CorruptRecord, UnsupportedFeature

# ------------------------------------------------------------------------------------------------
# frozen numbers (part of the format since version 2)
# ------------------------------------------------------------------------------------------------
STEP_BITS = 16  # the quantizer step as an integer: round(step * 2^16)
STEP_Q_MIN, STEP_Q_MAX = 1 << 4, 1 << 28  # steps 2^-12 .. 2^12; others are coded with `range`
MEAN_FRACTION_BITS = 3  # means are coded in eighths of a symbol
MEAN_OFFSETS = 1 << MEAN_FRACTION_BITS
SCALE_OCTAVE_STEPS = 8  # scale table: 2^(SCALE_MIN_LOG2 + k / 8), k = 0 .. SCALES - 1
SCALE_MIN_LOG2 = -4
SCALES = 81  # 2^-4 = 0.0625 .. 2^6 = 64 symbols
SUB_BINS = 16  # midpoint rule over each bin: the table integrates the density, not one sample
CENTRE_LIMIT = 1 << 30  # centre symbols are clipped here, so lo .. hi stays inside int32

FAMILY_GAUSS, FAMILY_LAPLACE = 0, 1
FAMILIES = (FAMILY_GAUSS, FAMILY_LAPLACE)
_HALF_WIDTH_FACTOR = {FAMILY_GAUSS: 6, FAMILY_LAPLACE: 14}  # tails beyond are escapes
# 1 / (2 ln 2) and 1 / ln 2 as binary64 literals: w = 2^-t with t = u^2 / (2 ln 2) or |u| / ln 2
_INV_2LN2 = 0.7213475204444817
_INV_LN2 = 1.4426950408889634

_EXP2 = np.array(spec.EXP2_Q30, dtype=np.int64)
_TOTAL = 1 << spec.RANGE_PRECISION


# ------------------------------------------------------------------------------------------------
# the quantizer step in fixed point
# ------------------------------------------------------------------------------------------------
def step_fixed(step: float) -> int:
    """round(step * 2^16) (one exact scaling, one rounding); refuses steps the prior does not cover."""
    if isinstance(step, bool) or not (isinstance(step, (int, float, np.floating)) and math.isfinite(step)):
        raise UnsupportedFeature(f"prior: bad quantizer step {step!r}")
    q = round(float(step) * (1 << STEP_BITS))
    if not STEP_Q_MIN <= q <= STEP_Q_MAX:
        raise UnsupportedFeature(f"prior: quantizer step {step} outside 2^-12 .. 2^12")
    return q


def steps_fixed(step, channels: int) -> np.ndarray:
    """One step (a number or a 1-sequence) or one per channel -> int64 (channels,) of round(step * 2^16)."""
    steps = [step] if isinstance(step, (int, float, np.floating)) else list(step)
    if len(steps) not in (1, channels):
        raise UnsupportedFeature(f"prior: {len(steps)} quantizer steps for {channels} channels (1 or {channels})")
    q = [step_fixed(s) for s in steps]
    return np.array(q * channels if len(q) == 1 else q, dtype=np.int64)


def log2_fixed(value_q16: int, frac_bits: int) -> int:
    """floor(log2(value_q16 / 2^16) * 2^frac_bits), by integer repeated squaring (exact, portable)."""
    e = value_q16.bit_length() - 1
    m = (value_q16 << 62) >> e  # mantissa in [1, 2) as Q62, exact (python ints)
    result = e - STEP_BITS
    for _ in range(frac_bits):
        m = (m * m) >> 62
        result <<= 1
        if m >= 2 << 62:
            m >>= 1
            result |= 1
    return result


# ------------------------------------------------------------------------------------------------
# predictions -> table ids; table id -> frequency table
# ------------------------------------------------------------------------------------------------
def table_ids(mean: np.ndarray, log2_scale: np.ndarray, step_q, act_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer predictions (latent units, 2^-act_bits) -> (centre symbol, table id), int64 arrays.

    mean in eighths of a symbol: m8 = round(mean * 8 / step); centre = round(m8 / 8); offset = m8 - 8 centre
    in -4..3. Scale in symbols: log2 = log2_scale - log2(step), to the nearest eighth octave, clipped.
    Table id = scale index * 8 + offset + 4. step_q: an int, or int64 broadcastable to mean (n, 1): the step
    of each row's channel."""
    step_q = np.asarray(step_q, dtype=np.int64)
    log2_step = np.vectorize(lambda q: log2_fixed(int(q), act_bits), otypes=[np.int64])(step_q) if step_q.size \
        else np.zeros(step_q.shape, np.int64)
    num = mean.astype(np.int64) << (STEP_BITS + MEAN_FRACTION_BITS - act_bits)
    m8 = (2 * num + step_q) // (2 * step_q)
    half = MEAN_OFFSETS // 2
    centre = (m8 + half) >> MEAN_FRACTION_BITS
    offset = m8 - (centre << MEAN_FRACTION_BITS) + half
    centre = np.clip(centre, -CENTRE_LIMIT, CENTRE_LIMIT)
    rel = log2_scale.astype(np.int64) - log2_step - (SCALE_MIN_LOG2 << act_bits)
    unit = (1 << act_bits) // SCALE_OCTAVE_STEPS
    k = np.clip((rel + unit // 2) // unit, 0, SCALES - 1)
    return centre, k * MEAN_OFFSETS + offset


def table_scale(k: int) -> float:
    """Scale of table index k in symbols, 2^(SCALE_MIN_LOG2 + k/8), from EXP2_Q30 (exact in binary64)."""
    octave, eighth = divmod(k, SCALE_OCTAVE_STEPS)
    if eighth == 0:
        mant = 1 << 30
    else:  # 2^(e/8) = 2 * 2^(-(256 - 32 e)/256)
        mant = 2 * spec.EXP2_Q30[256 - 32 * eighth]
    return math.ldexp(float(mant), SCALE_MIN_LOG2 + octave - 30)


@lru_cache(maxsize=4096)
def frequency_table(family: int, tid: int) -> tuple[int, np.ndarray]:
    """(offset of the lowest symbol from the centre, frequencies summing to 2^24, each >= 1) of table `tid`.

    The weight of symbol j (relative to the centre) is the midpoint-rule integral of the density
    2^-t over its bin, with t = u^2 / (2 ln 2) (Gauss) or |u| / ln 2 (Laplace), u = (x - mean) / scale;
    t is mapped to integers through EXP2_Q30 exactly as the `range` coder does. Read-only result."""
    k, offset = divmod(int(tid), MEAN_OFFSETS)
    if not 0 <= k < SCALES:
        raise CorruptRecord(f"prior: table id {tid} out of range")
    scale = table_scale(k)
    mu = (offset - MEAN_OFFSETS // 2) / MEAN_OFFSETS
    half = max(2, math.ceil(_HALF_WIDTH_FACTOR[family] * scale) + 1)
    j = np.arange(-half, half + 1, dtype=np.float64)
    sub = (2.0 * np.arange(SUB_BINS, dtype=np.float64) + 1.0 - SUB_BINS) / (2.0 * SUB_BINS)
    u = np.abs((j[:, None] + sub[None, :]) - mu) / scale
    t = u * u * _INV_2LN2 if family == FAMILY_GAUSS else u * _INV_LN2
    tq = np.floor(np.minimum(t, 64.0) * 256.0).astype(np.int64)
    w = (_EXP2[tq & 255] >> np.minimum(tq >> 8, 40)).sum(axis=1)
    n = w.size
    total = int(w.sum())
    free = _TOTAL - n
    q = (w * free) // total
    f = q + 1
    f[int(np.argmax(w))] += free - int(q.sum())
    f.flags.writeable = False
    return -half, f


@lru_cache(maxsize=4096)
def table_model(family: int, tid: int):
    lo, f = frequency_table(family, tid)
    return lo, f, constriction.stream.model.Categorical((f - 1).astype(np.float32), perfect=False)


@lru_cache(maxsize=4096)
def table_bits(family: int, tid: int) -> np.ndarray:
    """Ideal cost in bits of each entry of table `tid`."""
    _, f = frequency_table(family, tid)
    b = spec.RANGE_PRECISION - np.log2(f)
    b.flags.writeable = False
    return b
