"""The conditional latent prior (coder `prior`): a small integer network predicts every symbol's
distribution from what the decoder already holds, and the range coder codes with it.

Why integer: the decoder must rebuild exactly the encoder's frequency tables, on any CPU, thread
count, BLAS or numpy version. Every step here is int64 numpy arithmetic (exact, order-free) or a
single correctly rounded IEEE-754 binary64 operation, like the `range` coder's model_table; no
float BLAS, no transcendental function.

Per latent frame t (C channels, h x w), two passes over a checkerboard (He et al. 2021):
  anchors     (y + x even): conditioned on the previous decoded latent frame(s) (a temporal prior)
  non-anchors (y + x odd):  conditioned on the same, plus the decoded anchors of frame t
The network gives each symbol a mean (latent units) and log2 of a scale; both are mapped to
symbol units with the step of the symbol's channel (one step for all channels, layout 1, or one per channel,
layout 2: the gain vectors of Cui et al., CVPR 2021, "Asymmetric Gained Deep Image Compression with Continuous
Rate Adaptation"), then to integers: a centre symbol, a mean offset in eighths of a symbol and an index into a frozen table of
scales (eighth-octave steps). (scale index, offset) names one of SCALES * 8 frequency tables, built
from the frozen EXP2_Q30 table exactly as the `range` coder builds its tables.

Inside one pass, symbols are coded grouped by table (ascending table id), each group in C-order of
(channel, y, x): the decoder knows every table id of a pass before it decodes the pass, and one
constriction call per group keeps the coder fast. Chunk payload (docs/bitstream.md has the
draft): u32 M, M u32 range-coder words, LEB128 escape values (one per escaped symbol, in coding
order), exactly as in the `range` coder.

Why one module of ~600 lines: the fixed-point network, the frozen tables and the coding order are one
bit-exact contract with docs/bitstream.md (and the reference decoder written from it); kept together, a
change to one is seen beside the others.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

import constriction

from . import spec
from .atomic import write_atomically
from .entropy import _constriction_call, _varint_decode, _varint_encode
from .errors import CorruptRecord, UnsupportedFeature

# ------------------------------------------------------------------------------------------------
# frozen numbers (part of the format once version 2 ships)
# ------------------------------------------------------------------------------------------------
STEP_BITS = 16  # the quantizer step as an integer: round(step * 2^16)
STEP_Q_MIN, STEP_Q_MAX = 1 << 4, 1 << 28  # steps 2^-12 .. 2^12; others are coded with `range`
ACT_LIMIT = 1 << 20  # activations are clipped to +-ACT_LIMIT (keeps every product far below 2^63)
WEIGHT_LIMIT = 1 << 20
BIAS_LIMIT = 1 << 50
MEAN_FRACTION_BITS = 3  # means are coded in eighths of a symbol
MEAN_OFFSETS = 1 << MEAN_FRACTION_BITS
SCALE_OCTAVE_STEPS = 8  # scale table: 2^(SCALE_MIN_LOG2 + k / 8), k = 0 .. SCALES - 1
SCALE_MIN_LOG2 = -4
SCALES = 81  # 2^-4 = 0.0625 .. 2^6 = 64 symbols
SUB_BINS = 16  # midpoint rule over each bin: the table integrates the density, not one sample
CENTRE_LIMIT = 1 << 30  # centre symbols are clipped here, so lo .. hi stays inside int32

FAMILY_GAUSS, FAMILY_LAPLACE = 0, 1
_HALF_WIDTH_FACTOR = {FAMILY_GAUSS: 6, FAMILY_LAPLACE: 14}  # tails beyond are escapes
# 1 / (2 ln 2) and 1 / ln 2 as binary64 literals: w = 2^-t with t = u^2 / (2 ln 2) or |u| / ln 2
_INV_2LN2 = 0.7213475204444817
_INV_LN2 = 1.4426950408889634

_EXP2 = np.array(spec.EXP2_Q30, dtype=np.int64)
_TOTAL = 1 << spec.RANGE_PRECISION


# ------------------------------------------------------------------------------------------------
# the weights: architecture + integer tensors
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PriorArch:
    """Shape of the prior network; stored as JSON metadata beside its integer weights."""

    channels: int = 16  # latent channels C
    hidden: int = 32  # width of the trunk and of the spatial-context branch
    prev_frames: int = 1  # decoded latent frames the temporal prior sees
    checkerboard: bool = True  # False: one spatial pass (no spatial context)
    channel_groups: int = 1  # channels coded in this many groups, each conditioned on the groups before it
    family: int = FAMILY_GAUSS
    act_bits: int = 8  # activations: integers in units of 2^-act_bits (latent units)
    weight_bits: int = 12  # weights: integers in units of 2^-weight_bits

    def layers(self) -> dict[str, tuple[int, int, int]]:
        """name -> (kernel, inputs, outputs). Convolutions are 'same' with zero padding."""
        c, hd = self.channels, self.hidden
        out = {
            "trunk1": (3, c * self.prev_frames, hd),  # previous frame(s) -> features
            "trunk2": (3, hd, hd),
        }
        if self.checkerboard:
            out["context1"] = (3, hd + c, hd)  # features + decoded anchors (zeros elsewhere) -> features
        for sp, g in self.passes():
            # features + previous frame + this frame's decoded channels here (groups < g) -> (mean, log2 scale)
            out[f"pass{sp}{g}.hidden"] = (1, hd + 2 * c, hd)
            out[f"pass{sp}{g}.out"] = (1, hd, 2 * self.group_size)
        return out

    @property
    def spatial_passes(self) -> int:
        return 2 if self.checkerboard else 1

    @property
    def group_size(self) -> int:
        return self.channels // self.channel_groups

    def passes(self) -> list[tuple[int, int]]:
        """Coding order: (spatial pass, channel group); all groups of the anchors before the non-anchors."""
        return [(sp, g) for sp in range(self.spatial_passes) for g in range(self.channel_groups)]

    @property
    def conditions(self) -> int:
        """Inputs added to trunk1's bias: log2 step, and one 'frame k back exists' flag per frame."""
        return 1 + self.prev_frames

    def to_json(self) -> str:
        return json.dumps({k: getattr(self, k) for k in self.__dataclass_fields__}, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "PriorArch":
        raw = json.loads(text)
        arch = PriorArch(**{k: raw[k] for k in PriorArch.__dataclass_fields__ if k in raw})
        arch.validate()
        return arch

    def validate(self) -> None:
        if not (1 <= self.channels <= 256 and 1 <= self.hidden <= 256 and 1 <= self.prev_frames <= 4
                and 1 <= self.channel_groups <= self.channels and self.channels % self.channel_groups == 0):
            raise UnsupportedFeature(f"prior: unsupported architecture {self}")
        if self.family not in _HALF_WIDTH_FACTOR or not (4 <= self.act_bits <= 12 and 4 <= self.weight_bits <= 16):
            raise UnsupportedFeature(f"prior: unsupported family or fixed-point format {self}")


@dataclass(frozen=True)
class PriorWeights:
    """Integer weights: for each layer `name.weight` (k*k*in, out) in (ky, kx, in) row order, `name.bias`
    (out,) in units of 2^-(act_bits + weight_bits); `trunk1.condition` (conditions, out)."""

    arch: PriorArch
    tensors: dict[str, np.ndarray] = field(repr=False)
    sha256: str = ""

    def __post_init__(self):
        for name, (k, cin, cout) in self.arch.layers().items():
            self._check(f"{name}.weight", (k * k * cin, cout), WEIGHT_LIMIT)
            self._check(f"{name}.bias", (cout,), BIAS_LIMIT)
        self._check("trunk1.condition", (self.arch.conditions, self.arch.layers()["trunk1"][2]), WEIGHT_LIMIT)

    def _check(self, key: str, shape: tuple, limit: int) -> None:
        a = self.tensors.get(key)
        if a is None or a.shape != shape or not np.issubdtype(a.dtype, np.integer):
            raise UnsupportedFeature(f"prior: tensor {key} missing or not an integer array of shape {shape}")
        if a.size and int(np.abs(a.astype(np.int64)).max()) >= limit:
            raise UnsupportedFeature(f"prior: tensor {key} exceeds {limit}")

    def __getitem__(self, key: str) -> np.ndarray:
        return self.tensors[key]


def save_prior(weights: PriorWeights, path: str | Path) -> str:
    """Write a .safetensors file (int32 weights, int64 biases, arch JSON in the metadata), all or nothing;
    return its sha256."""
    from safetensors.numpy import save_file

    tensors = {k: np.ascontiguousarray(v, dtype=np.int64 if k.endswith(".bias") else np.int32)
               for k, v in weights.tensors.items()}
    write_atomically(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "cdtcodec-prior",
                                                                         "arch": weights.arch.to_json()}))
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_prior(path: str | Path) -> PriorWeights:
    from safetensors import safe_open

    data = Path(path).read_bytes()
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        if meta.get("format") != "cdtcodec-prior":
            raise UnsupportedFeature(f"{path}: not a cdtcodec prior weights file")
        tensors = {k: f.get_tensor(k).astype(np.int64) for k in f.keys()}
    return PriorWeights(PriorArch.from_json(meta["arch"]), tensors, hashlib.sha256(data).hexdigest())


# ------------------------------------------------------------------------------------------------
# integer helpers
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


def condition_log2_step(step_q: np.ndarray, frac_bits: int) -> int:
    """The prior's conditioning input: floor(mean over channels of floor(log2 step_c * 2^frac_bits)), the log2
    of the steps' geometric mean. Why one scalar: the network was trained with one step per sample, and the
    per-channel steps already reach it where they matter (each channel's context dequantized with its own step,
    each prediction turned into symbols with its own step); the geometric mean is the scalar whose log is the
    mean log-step, the "overall coarseness" a gain vector at equal geometric mean leaves unchanged (gain
    vectors are normalised that way), and with equal steps it is that step's log2 exactly (layout 1)."""
    logs = [log2_fixed(int(q), frac_bits) for q in step_q]
    return sum(logs) // len(logs)


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


def _round_shift(acc: np.ndarray, bits: int) -> np.ndarray:
    return (acc + (1 << (bits - 1))) >> bits


def conv_int(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, kernel: int, weight_bits: int,
             relu: bool, where: np.ndarray | None = None) -> np.ndarray:
    """Exact integer 'same' convolution. x: int64 (h, w, cin) -> int64 (h, w, cout), clipped to +-ACT_LIMIT;
    with `where` (bool (h, w)) only those positions, (count, cout) in raster order.

    im2col then one int64 matmul: numpy computes integer matmuls exactly, in any order."""
    h, w, cin = x.shape
    if kernel == 1:
        cols = x.reshape(h * w, cin)
    else:
        r = kernel // 2
        padded = np.zeros((h + 2 * r, w + 2 * r, cin), dtype=np.int64)
        padded[r:r + h, r:r + w] = x
        cols = np.concatenate([padded[dy:dy + h, dx:dx + w] for dy in range(kernel) for dx in range(kernel)],
                              axis=2).reshape(h * w, kernel * kernel * cin)
    if where is not None:
        cols = cols[where.reshape(-1)]
    y = _round_shift(cols @ weight + bias, weight_bits)
    if relu:
        y = np.maximum(y, 0)
    y = np.clip(y, -ACT_LIMIT, ACT_LIMIT)
    return y if where is not None else y.reshape(h, w, y.shape[1])  # explicit: h or w may be 0 (no positions)


def dequantize_fixed(symbols: np.ndarray, step_q, act_bits: int) -> np.ndarray:
    """Symbols (C, h, w) -> int64 (h, w, C) latents in units of 2^-act_bits: round(symbol * step); step_q an int
    or int64 (C,), channel c dequantized with its own step (|x| < 2^31, step_q <= 2^28: products < 2^59)."""
    x = np.clip(np.asarray(symbols, dtype=np.int64), spec.SYMBOL_MIN, spec.SYMBOL_MAX)
    sq = np.asarray(step_q, dtype=np.int64)
    y = _round_shift(x * (sq[:, None, None] if sq.ndim else sq), STEP_BITS - act_bits)
    return np.clip(y, -ACT_LIMIT, ACT_LIMIT).transpose(1, 2, 0)


def anchor_mask(h: int, w: int) -> np.ndarray:
    """True on the checkerboard's first pass: (y + x) even."""
    return (np.add.outer(np.arange(h), np.arange(w)) % 2) == 0


# ------------------------------------------------------------------------------------------------
# the network, integer version (the decoder's definition)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameParams:
    """Integer predictions for one latent frame: (C, h, w) int64 each, in units of 2^-act_bits:
    mean (latent units) and log2 scale (latent units) of the anchor and the non-anchor pass."""

    anchor_mean: np.ndarray
    anchor_log2_scale: np.ndarray
    context: "object | None"  # (features, prev) kept for the non-anchor pass


class PriorNet:
    """Integer evaluation of the prior network."""

    def __init__(self, weights: PriorWeights):
        self.w = weights
        self.arch = weights.arch

    def _layer(self, name: str, x: np.ndarray, relu: bool, extra_bias: np.ndarray | None = None,
               where: np.ndarray | None = None) -> np.ndarray:
        k, _, _ = self.arch.layers()[name]
        bias = self.w[f"{name}.bias"] if extra_bias is None else self.w[f"{name}.bias"] + extra_bias
        return conv_int(x, self.w[f"{name}.weight"], bias, k, self.arch.weight_bits, relu, where)

    @staticmethod
    def _split(out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(count, 2n) -> mean, log2 scale, each (n, count)."""
        n = out.shape[1] // 2
        return out[:, :n].T, out[:, n:].T

    def trunk(self, context: Sequence[np.ndarray], h: int, w: int, step_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features (h, w, hidden) and the newest previous frame (h, w, C) from the decoded context
        (up to prev_frames symbol arrays (C, h, w), newest last); step_q int64 (C,), one step per channel."""
        a = self.arch
        frames = list(context)[-a.prev_frames:] if a.prev_frames else []
        deq = [dequantize_fixed(f, step_q, a.act_bits) for f in frames]
        zeros = np.zeros((h, w, a.channels), dtype=np.int64)
        newest_first = deq[::-1] + [zeros] * (a.prev_frames - len(deq))
        x = np.concatenate(newest_first, axis=2)
        cond = np.array([condition_log2_step(step_q, a.act_bits)] + [int(i < len(deq)) << a.act_bits
                                                            for i in range(a.prev_frames)], dtype=np.int64)
        extra = cond @ self.w["trunk1.condition"]
        f = self._layer("trunk1", x, True, extra)
        f = self._layer("trunk2", f, True)
        return f, newest_first[0]

    def base(self, sp: int, features: np.ndarray, anchors: np.ndarray | None, where: np.ndarray) -> np.ndarray:
        """Features (count, hidden) of spatial pass `sp` at the positions `where` (bool (h, w)), raster order.
        Pass 1 adds the decoded anchors (h, w, C) of the current frame (zeros on the other positions)."""
        if sp == 0:
            return features.reshape(-1, features.shape[2])[where.reshape(-1)]
        return self._layer("context1", np.concatenate([features, anchors], axis=2), True, where=where)

    def group_params(self, sp: int, g: int, base: np.ndarray, prev_sel: np.ndarray, current_sel: np.ndarray):
        """mean, log2 scale (group_size, count) of channel group g; prev_sel and current_sel (count, C) are the
        previous frame and this frame's already decoded channels (zeros for groups >= g) at those positions."""
        x = np.concatenate([base, prev_sel, current_sel], axis=1)[:, None, :]  # (count, 1, .): 1x1 convs
        hid = self._layer(f"pass{sp}{g}.hidden", x, True)
        out = self._layer(f"pass{sp}{g}.out", hid, False)
        return self._split(out.reshape(base.shape[0], out.shape[2]))  # a pass may have no positions (1x1 latent)


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
def _table_model(family: int, tid: int):
    lo, f = frequency_table(family, tid)
    return lo, f, constriction.stream.model.Categorical((f - 1).astype(np.float32), perfect=False)


@lru_cache(maxsize=4096)
def table_bits(family: int, tid: int) -> np.ndarray:
    """Ideal cost in bits of each entry of table `tid`."""
    _, f = frequency_table(family, tid)
    b = spec.RANGE_PRECISION - np.log2(f)
    b.flags.writeable = False
    return b


# ------------------------------------------------------------------------------------------------
# the coder
# ------------------------------------------------------------------------------------------------
@dataclass
class PassStats:
    """Ideal bits of the symbols of one kind of pass, and their count."""

    bits: float = 0.0
    symbols: int = 0
    escape_bytes: int = 0


@dataclass
class PriorStats:
    anchors: PassStats = field(default_factory=PassStats)
    non_anchors: PassStats = field(default_factory=PassStats)
    words: int = 0

    @property
    def model_bits(self) -> float:
        return self.anchors.bits + self.non_anchors.bits


class PriorCoder:
    """Codes a chunk (C, t, h, w) of symbols frame by frame, each frame conditioned on the decoded frames
    before it (`context`: earlier symbol arrays (C, h, w), oldest first; may be empty)."""

    name = "prior"

    def __init__(self, weights: PriorWeights):
        weights.arch.validate()
        self.net = PriorNet(weights)
        self.arch = weights.arch

    # -- one pass -----------------------------------------------------------------------------------
    def _pass_order(self, mean, log2_scale, step_q):
        centre, tid = table_ids(mean, log2_scale, step_q, self.arch.act_bits)
        centre, tid = centre.reshape(-1), tid.reshape(-1)
        order = np.argsort(tid, kind="stable")  # groups by table, C-order inside a group
        bounds = np.flatnonzero(np.diff(tid[order])) + 1
        return centre, tid, order, np.split(order, bounds)

    def _encode_pass(self, enc, x_sel, mean, log2_scale, step_q, escapes, stats: PassStats):
        centre, tid, _, groups = self._pass_order(mean, log2_scale, step_q)
        fam = self.arch.family
        for g in groups:
            if g.size == 0:
                continue
            lo_off, f, model = _table_model(fam, int(tid[g[0]]))
            lo = centre[g] + lo_off
            hi = lo + f.size - 1
            v = x_sel[g]
            idx = np.clip(v - lo, 0, f.size - 1)
            stats.bits += float(table_bits(fam, int(tid[g[0]]))[idx].sum())
            esc = (v <= lo) | (v >= hi)
            if esc.any():
                e = np.where(v <= lo, lo - v, v - hi)[esc]
                escapes.append(e)
            enc.encode(idx.astype(np.int32), model)
        stats.symbols += int(x_sel.size)

    def _decode_pass(self, dec, mean, log2_scale, step_q, what):
        centre, tid, _, groups = self._pass_order(mean, log2_scale, step_q)
        fam = self.arch.family
        vals = np.empty(centre.size, dtype=np.int64)
        pending = []  # (positions in coding order, low-side flags): escapes come after all range words
        for g in groups:
            if g.size == 0:
                continue
            lo_off, f, model = _table_model(fam, int(tid[g[0]]))
            idx = np.asarray(_constriction_call(lambda: dec.decode(model, g.size), what), dtype=np.int64)
            if idx.shape != (g.size,) or idx.min() < 0 or idx.max() >= f.size:
                raise CorruptRecord(f"{what}: decoded symbols out of the model's range")
            lo = centre[g] + lo_off
            vals[g] = lo + idx
            esc = (idx == 0) | (idx == f.size - 1)
            if esc.any():
                pending.append((g[esc], idx[esc] == 0))
        return vals, pending

    # -- frames -------------------------------------------------------------------------------------
    def _masks(self, h, w):
        if not self.arch.checkerboard:
            return [np.ones((h, w), dtype=bool)]
        m = anchor_mask(h, w)
        return [m, ~m]

    def _passes(self, frame: np.ndarray, history: list[np.ndarray], step_q: np.ndarray):
        """The coding order of one frame, shared by encoder and decoder: yields (spatial pass, channel
        slice, position mask, mean, log2 scale) pass by pass; step_q int64 (C,). `frame` (C, h, w) must hold the pass's
        symbols when the generator resumes (the decoder writes them in between)."""
        a = self.arch
        c, h, w = frame.shape
        step_q = np.broadcast_to(np.asarray(step_q, dtype=np.int64), (c,))
        feats, prev = self.net.trunk(history, h, w, step_q)
        flat_prev = prev.reshape(h * w, c)
        for sp, mask in enumerate(self._masks(h, w)):
            anchors = None
            if sp == 1:  # everything of pass 0 (all channels of the anchors) is decoded by now
                anchors = dequantize_fixed(np.where(mask, 0, frame), step_q, a.act_bits)
            base = self.net.base(sp, feats, anchors, mask)
            sel = mask.reshape(-1)
            for g in range(a.channel_groups):
                lo, hi = g * a.group_size, (g + 1) * a.group_size
                current = np.zeros((int(sel.sum()), c), dtype=np.int64)
                if lo:
                    known = dequantize_fixed(frame[:lo], step_q[:lo], a.act_bits).reshape(h * w, lo)
                    current[:, :lo] = known[sel]
                mean, ls = self.net.group_params(sp, g, base, flat_prev[sel], current)
                yield sp, slice(lo, hi), mask, mean, ls

    def encode(self, symbols, step, context: Sequence[np.ndarray] = ()) -> bytes:
        """`step`: the header's quantizer step(s), one number or one per channel (layout 2)."""
        return self._encode(symbols, step, context)[0]

    def _encode(self, symbols, step, context):
        x = np.asarray(symbols)
        if x.ndim != 4 or x.shape[0] != self.arch.channels:
            raise ValueError(f"prior: symbols must be ({self.arch.channels}, t, h, w), got {x.shape}")
        if x.size and (int(x.min()) < spec.SYMBOL_MIN or int(x.max()) > spec.SYMBOL_MAX):
            raise ValueError("symbols must fit in int32")
        x = x.astype(np.int64)
        step_q = steps_fixed(step, self.arch.channels)
        stats = PriorStats()
        if x.size == 0:
            return b"", stats
        c, t, h, w = x.shape
        enc = constriction.stream.queue.RangeEncoder()
        escapes: list[np.ndarray] = []
        history = [np.asarray(f, dtype=np.int64) for f in context][-self.arch.prev_frames:]
        for i in range(t):
            frame = x[:, i]
            for sp, chans, mask, mean, ls in self._passes(frame, history, step_q):
                self._encode_pass(enc, frame[chans][:, mask].reshape(-1), mean, ls, step_q[chans, None], escapes,
                                  stats.anchors if sp == 0 else stats.non_anchors)
            history = (history + [frame])[-self.arch.prev_frames:]
        words = enc.get_compressed().astype("<u4")
        stats.words = int(words.size)
        esc_bytes = _varint_encode(np.concatenate(escapes)) if escapes else b""
        stats.anchors.escape_bytes = len(esc_bytes)  # reported together
        return spec.RANGE_WORDS.pack(words.size) + words.tobytes() + esc_bytes, stats

    def decode(self, payload: bytes, shape: Sequence[int], step, context: Sequence[np.ndarray] = (),
               what: str = "chunk") -> np.ndarray:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 4 or shape[0] != self.arch.channels or min(shape) < 0:
            raise CorruptRecord(f"{what}: prior chunks are ({self.arch.channels}, t, h, w), got {shape}")
        c, t, h, w = shape
        if c * t * h * w == 0:
            if payload:
                raise CorruptRecord(f"{what}: payload for an empty array")
            return np.zeros(shape, dtype=np.int32)
        if c * t * h * w > spec.MAX_CHUNK_SYMBOLS:
            raise CorruptRecord(f"{what}: {c * t * h * w} symbols exceeds {spec.MAX_CHUNK_SYMBOLS}")
        step_q = steps_fixed(step, self.arch.channels)
        if len(payload) < spec.RANGE_WORDS.size:
            raise CorruptRecord(f"{what}: prior payload too short")
        (nwords,) = spec.RANGE_WORDS.unpack_from(payload, 0)
        pos = spec.RANGE_WORDS.size
        if nwords * 4 > len(payload) - pos:
            raise CorruptRecord(f"{what}: {nwords} range words announced, payload too short")
        words = np.frombuffer(payload, dtype="<u4", count=nwords, offset=pos).astype(np.uint32)
        pos += 4 * nwords
        dec = _constriction_call(lambda: constriction.stream.queue.RangeDecoder(words), what)
        out = np.empty(shape, dtype=np.int64)
        history = [np.asarray(f, dtype=np.int64) for f in context][-self.arch.prev_frames:]
        # The escape values sit after the range words but are self-delimiting (LEB128), so they are all
        # parsed up front and handed out in coding order: each pass is complete before the next one needs it.
        esc_values = _EscapeReader(payload[pos:], what)
        for i in range(t):
            frame = np.zeros((c, h, w), dtype=np.int64)
            for _, chans, mask, mean, ls in self._passes(frame, history, step_q):
                vals, pending = self._decode_pass(dec, mean, ls, step_q[chans, None], what)
                for positions, low in pending:
                    e = esc_values.take(positions.size)
                    vals[positions] += np.where(low, -e, e)
                view = frame[chans]  # a view: basic slicing
                view[:, mask] = vals.reshape(view.shape[0], -1)
            out[:, i] = frame
            history = (history + [frame])[-self.arch.prev_frames:]
        esc_values.finish()
        if out.min() < spec.SYMBOL_MIN or out.max() > spec.SYMBOL_MAX:
            raise CorruptRecord(f"{what}: escaped symbol outside int32")
        return out.astype(np.int32)


class _EscapeReader:
    """LEB128 escape values, consumed in coding order; must be used up exactly."""

    def __init__(self, data: bytes, what: str):
        b = np.frombuffer(data, dtype=np.uint8)
        self.what = what
        self.ends = np.flatnonzero(b < 0x80)
        if b.size and (self.ends.size == 0 or self.ends[-1] != b.size - 1):
            raise CorruptRecord(f"{what}: escape values do not end at the payload's end")
        self.values = _varint_decode(data, int(self.ends.size), what) if b.size else np.zeros(0, np.int64)
        self.used = 0

    def take(self, count: int) -> np.ndarray:
        if self.used + count > self.values.size:
            raise CorruptRecord(f"{self.what}: fewer escape values than escaped symbols")
        v = self.values[self.used:self.used + count]
        self.used += count
        return v

    def finish(self) -> None:
        if self.used != self.values.size:
            raise CorruptRecord(f"{self.what}: {self.values.size - self.used} escape values left over")
