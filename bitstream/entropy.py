"""Entropy coders for chunk symbols: `zstd` (baseline) and `range` (constriction range coding).

Both code an integer array whose first axis is the channel axis (a 0-d or 1-d array is one
channel) and whose values fit in int32, and give it back as int32 of the given shape.

`range` model (model id 1, docs/bitstream.md has the byte-level description): for every
channel of every chunk the encoder picks a family (Laplace-, Gauss- or Cauchy-shaped) and a
(mean, scale) pair stored as float16, by minimising the real coded size. The decoder turns
those stored values into an integer frequency table using IEEE-754 double operations that are
correctly rounded everywhere (+ - * / floor) and a frozen integer table (spec.EXP2_Q30), so the
table is identical on every platform. constriction then range-codes with exactly that table
(probabilities passed as integers w with sum 2^24 - n make its "fast" quantiser return
w + 1, i.e. our table, with no float rounding). Values at or beyond the two ends of the table
are sent as the end symbol plus an LEB128 escape value after the range-coded words.

Why one module of ~500 lines: each coder sits next to its integer probability model, and encoder and
decoder must stay bit-exact mirrors of each other; splitting them would separate the two halves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import constriction
import numpy as np
import zstandard

from . import spec
from .errors import BitstreamError, CorruptRecord, LimitExceeded

_EXP2 = np.array(spec.EXP2_Q30, dtype=np.int64)
_TOTAL = 1 << spec.RANGE_PRECISION
_F16_MAX = 65504.0
_F16_MIN_SCALE = 2.0 ** -14  # smallest normal float16; the encoder never stores a smaller scale
_LOG2_E = 1.0 / math.log(2.0)


# ------------------------------------------------------------------------------------------------
# shared helpers
# ------------------------------------------------------------------------------------------------
def as_channels(symbols) -> tuple[np.ndarray, tuple[int, ...]]:
    """Validate an integer array and view it as (channels, n) int64."""
    a = np.asarray(symbols)
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"symbols must be an integer array, got dtype {a.dtype}")
    shape = a.shape
    if a.size:
        lo, hi = a.min(), a.max()
        if int(lo) < spec.SYMBOL_MIN or int(hi) > spec.SYMBOL_MAX:
            raise ValueError(f"symbols must fit in int32, got range [{int(lo)}, {int(hi)}]")
    a = a.astype(np.int64, copy=False)
    if a.ndim == 0:
        return a.reshape(1, 1), shape
    if a.ndim == 1:
        return a.reshape(1, a.size), shape
    return a.reshape(shape[0], a.size // shape[0] if shape[0] else 0), shape


def _channels_of(shape: Sequence[int]) -> tuple[int, int]:
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"bad shape {shape}")
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, shape[0]
    n = 1
    for s in shape[1:]:
        n *= s
    return shape[0], n


def _varint_encode(values: np.ndarray) -> bytes:
    """Unsigned LEB128 of each value (values < 2^35), concatenated."""
    v = np.asarray(values, dtype=np.uint64)
    if v.size == 0:
        return b""
    nbytes = np.ones(v.shape, dtype=np.int64)
    for k in range(1, spec.MAX_VARINT_BYTES):
        nbytes += v >= (np.uint64(1) << np.uint64(7 * k))
    out = np.zeros(int(nbytes.sum()), dtype=np.uint8)
    starts = np.concatenate(([0], np.cumsum(nbytes)[:-1]))
    for k in range(spec.MAX_VARINT_BYTES):
        sel = nbytes > k
        byte = ((v[sel] >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        byte |= np.where(nbytes[sel] > k + 1, 0x80, 0).astype(np.uint8)
        out[starts[sel] + k] = byte
    return out.tobytes()


def _varint_decode(data: bytes, count: int, what: str) -> np.ndarray:
    """Exactly `count` LEB128 values filling `data` completely."""
    b = np.frombuffer(data, dtype=np.uint8)
    if count == 0:
        if b.size:
            raise CorruptRecord(f"{what}: {b.size} trailing bytes after the coded symbols")
        return np.zeros(0, dtype=np.int64)
    ends = np.flatnonzero(b < 0x80)
    if ends.size != count or ends[-1] != b.size - 1:
        raise CorruptRecord(f"{what}: escape values do not match the {count} escaped symbols")
    starts = np.concatenate(([0], ends[:-1] + 1))
    lens = ends - starts + 1
    if lens.max() > spec.MAX_VARINT_BYTES:
        raise CorruptRecord(f"{what}: escape value longer than {spec.MAX_VARINT_BYTES} bytes")
    out = np.zeros(count, dtype=np.int64)
    for k in range(spec.MAX_VARINT_BYTES):
        sel = lens > k
        out[sel] |= (b[starts[sel] + k].astype(np.int64) & 0x7F) << (7 * k)
    return out


def _varint_len(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.int64)
    n = np.ones(v.shape, dtype=np.int64)
    for k in range(1, spec.MAX_VARINT_BYTES):
        n += v >= (1 << (7 * k))
    return n


def _entropy_bits(x: np.ndarray) -> float:
    """Order-0 empirical entropy of x in bits (sum over symbols)."""
    if x.size == 0:
        return 0.0
    _, cnt = np.unique(x, return_counts=True)
    p = cnt / x.size
    return float(-(cnt * np.log2(p)).sum())


def _constriction_call(fn, what: str):
    try:
        return fn()
    except BaseException as e:  # constriction panics arrive as pyo3 PanicException (BaseException)
        if isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError)):
            raise
        raise CorruptRecord(f"{what}: range decoder failed ({type(e).__name__})") from None


@dataclass
class CodedSize:
    """Real and ideal sizes of one symbol array under one coder."""

    coder: str
    num_symbols: int
    total_bytes: int  # the whole coded payload
    side_bytes: int  # model parameters (range) or framing (zstd)
    escape_bytes: int  # range: LEB128 escape values
    coded_bytes: int  # range: range-coded words; zstd: zstd frame
    model_bits: float | None  # range: ideal cross-entropy of the symbols under the stored model
    empirical_bits: float  # sum over channels of the order-0 entropy of that channel's symbols

    @property
    def bits_per_symbol(self) -> float:
        return 8.0 * self.total_bytes / max(1, self.num_symbols)

    @property
    def coder_gap(self) -> float | None:
        """(range-coded bits) / (model cross-entropy) - 1: the coder's loss against its model."""
        if self.model_bits is None or self.model_bits <= 0:
            return None
        return 8.0 * self.coded_bytes / self.model_bits - 1.0


# ------------------------------------------------------------------------------------------------
# zstd
# ------------------------------------------------------------------------------------------------
class ZstdCoder:
    """Zigzag-mapped symbols packed into 1, 2 or 4 bytes each (byte planes split for 2 and 4),
    compressed as one zstd frame with its content size."""

    name = "zstd"
    coder_id = spec.CoderId.ZSTD

    def __init__(self, level: int = 19):
        self.level = int(level)

    def encode(self, symbols) -> bytes:
        return self._encode(symbols)[0]

    def _encode(self, symbols):
        x, _ = as_channels(symbols)
        flat = x.reshape(-1)
        if flat.size == 0:
            return b"", 0
        zz = ((flat << 1) ^ (flat >> 63)).astype(np.uint64)
        top = int(zz.max())
        width = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 4
        packed = zz.astype({1: "<u1", 2: "<u2", 4: "<u4"}[width])
        raw = packed.view(np.uint8).reshape(-1, width).T.tobytes() if width > 1 else packed.tobytes()
        frame = zstandard.ZstdCompressor(level=self.level, write_content_size=True).compress(raw)
        return spec.ZSTD_WIDTH.pack(width) + frame, width

    def decode(self, payload: bytes, shape: Sequence[int], what: str = "chunk") -> np.ndarray:
        c, n = _channels_of(shape)
        total = c * n
        if total == 0:
            if payload:
                raise CorruptRecord(f"{what}: payload for an empty array")
            return np.zeros(shape, dtype=np.int32)
        if total > spec.MAX_CHUNK_SYMBOLS:
            raise LimitExceeded(f"{what}: {total} symbols exceeds {spec.MAX_CHUNK_SYMBOLS}")
        if len(payload) < spec.ZSTD_WIDTH.size:
            raise CorruptRecord(f"{what}: empty zstd payload")
        (width,) = spec.ZSTD_WIDTH.unpack_from(payload, 0)
        if width not in (1, 2, 4):
            raise CorruptRecord(f"{what}: bad zstd symbol width {width}")
        frame = payload[spec.ZSTD_WIDTH.size:]
        expected = total * width
        try:
            fp = zstandard.get_frame_parameters(frame)
        except zstandard.ZstdError:
            raise CorruptRecord(f"{what}: bad zstd frame header") from None
        if fp.content_size != expected:
            raise CorruptRecord(f"{what}: zstd frame holds {fp.content_size} bytes, expected {expected}")
        try:
            raw = zstandard.ZstdDecompressor(max_window_size=1 << 27).decompress(
                frame, max_output_size=expected)
        except zstandard.ZstdError as e:
            raise CorruptRecord(f"{what}: zstd frame does not decompress ({e})") from None
        if len(raw) != expected:
            raise CorruptRecord(f"{what}: zstd frame gave {len(raw)} bytes, expected {expected}")
        planes = np.frombuffer(raw, dtype=np.uint8)
        if width > 1:
            planes = np.ascontiguousarray(planes.reshape(width, total).T)
        zz = planes.view({1: "<u1", 2: "<u2", 4: "<u4"}[width]).reshape(-1).astype(np.int64)
        vals = (zz >> 1) ^ -(zz & 1)
        if width == 4 and vals.size and (vals.min() < spec.SYMBOL_MIN or vals.max() > spec.SYMBOL_MAX):
            raise CorruptRecord(f"{what}: symbol outside int32")
        return vals.astype(np.int32).reshape(shape)

    def measure(self, symbols) -> CodedSize:
        x, _ = as_channels(symbols)
        payload, _ = self._encode(x)
        side = spec.ZSTD_WIDTH.size if payload else 0
        return CodedSize("zstd", int(x.size), len(payload), side, 0, len(payload) - side, None,
                         sum(_entropy_bits(ch) for ch in x))


# ------------------------------------------------------------------------------------------------
# range: the per-channel model (decoder-side definition, frozen)
# ------------------------------------------------------------------------------------------------
def model_table(family: int, mean: float, scale: float) -> tuple[int, np.ndarray]:
    """The exact frequency table for one channel: (lowest symbol, int64 frequencies summing to
    2^24, each >= 1). `mean` and `scale` are the float16 values from the file (as Python
    floats). This function *is* the format; docs/bitstream.md spells out the same steps."""
    if family not in (spec.Family.LAPLACE, spec.Family.GAUSS, spec.Family.CAUCHY):
        raise CorruptRecord(f"unknown model family {family}")
    if not (math.isfinite(mean) and math.isfinite(scale) and scale > 0):
        raise CorruptRecord(f"bad model parameters mean={mean!r} scale={scale!r}")
    c = math.floor(mean + 0.5)
    h = min(spec.RANGE_MAX_HALF_WIDTH, max(2, math.ceil(spec.RANGE_HALF_WIDTH_FACTOR[family] * scale)))
    k = np.arange(c - h, c + h + 1, dtype=np.float64)
    u = np.abs(k - mean) / scale
    if family == spec.Family.CAUCHY:
        w = np.floor(float(1 << 30) / (1.0 + u * u)).astype(np.int64)
    else:
        t = u if family == spec.Family.LAPLACE else u * u
        tq = np.floor(np.minimum(t, 64.0) * 256.0).astype(np.int64)
        w = _EXP2[tq & 255] >> np.minimum(tq >> 8, 40)
    n = w.size
    total_w = int(w.sum())
    if total_w == 0:
        w = np.ones(n, dtype=np.int64)
        total_w = n
    free = _TOTAL - n
    q = (w * free) // total_w
    f = q + 1
    f[int(np.argmax(w))] += free - int(q.sum())
    return c - h, f


@lru_cache(maxsize=8192)
def _cached_table(family: int, mean: float, scale: float):
    """model_table plus the ideal cost of each entry in bits; read-only arrays, memoised."""
    lo, f = model_table(family, mean, scale)
    bits = spec.RANGE_PRECISION - np.log2(f)
    f.flags.writeable = False
    bits.flags.writeable = False
    return lo, f, bits


def _f16(v: float) -> float:
    return float(np.float16(v))


def _encode_params(families: Sequence[int], means: Sequence[float], scales: Sequence[float]) -> bytes:
    c = len(families)
    packed = bytearray((c + 3) // 4)
    for i, fam in enumerate(families):
        packed[i // 4] |= fam << (2 * (i % 4))
    pairs = np.empty(2 * c, dtype="<f2")
    pairs[0::2] = means
    pairs[1::2] = scales
    return bytes(packed) + pairs.tobytes()


def _decode_params(payload: bytes, c: int, what: str):
    nfam = (c + 3) // 4
    need = nfam + c * spec.RANGE_CHANNEL_PARAMS.size
    if len(payload) < need + spec.RANGE_WORDS.size:
        raise CorruptRecord(f"{what}: range payload too short for {c} channel models")
    fam_bytes = np.frombuffer(payload, dtype=np.uint8, count=nfam)
    fams = [(int(fam_bytes[i // 4]) >> (2 * (i % 4))) & 3 for i in range(c)]
    if c % 4 and int(fam_bytes[-1]) >> (2 * (c % 4)):
        raise CorruptRecord(f"{what}: nonzero padding bits in the family byte")
    pairs = np.frombuffer(payload, dtype="<f2", count=2 * c, offset=nfam).astype(np.float64)
    return fams, pairs[0::2].tolist(), pairs[1::2].tolist(), need


class _Fit:
    """Encoder-side search for the cheapest (family, mean, scale) of one channel."""

    def __init__(self, x: np.ndarray):
        self.x = x
        self.vals, self.cnts = np.unique(x, return_counts=True)
        self.cache: dict = {}

    def cost(self, fam: int, m: float, s: float) -> float:
        key = (fam, m, s)
        if key in self.cache:
            return self.cache[key]
        lo, f, fbits = _cached_table(fam, m, s)
        n = f.size
        idx = np.minimum(np.maximum(self.vals - lo, 0), n - 1)
        bits = float(np.dot(self.cnts, fbits[idx]))
        if idx[0] == 0 or idx[-1] == n - 1:
            esc = (idx == 0) | (idx == n - 1)
            v = self.vals[esc]
            e = np.where(v <= lo, lo - v, v - (lo + n - 1))
            bits += 8.0 * float((self.cnts[esc] * _varint_len(e)).sum())
        self.cache[key] = bits
        return bits

    @staticmethod
    def q_mean(m: float) -> float:
        return _f16(min(max(m, -_F16_MAX), _F16_MAX))

    @staticmethod
    def q_scale(s: float) -> float:
        return _f16(min(max(s, _F16_MIN_SCALE), _F16_MAX))

    def starts(self):
        x = self.x.astype(np.float64)
        med = float(np.median(x))
        mean = float(x.mean())
        mad = float(np.abs(x - med).mean())
        std = float(x.std())
        q25, q75 = np.percentile(x, [25, 75])
        return [
            (spec.Family.LAPLACE, med, max(mad, 0.05) * math.log(2.0)),
            (spec.Family.GAUSS, mean, max(std, 0.05) * math.sqrt(2.0 * math.log(2.0))),
            (spec.Family.CAUCHY, med, max(float(q75 - q25) / 2.0, 0.05)),
        ]

    def search_scale(self, fam, m, s, steps):
        best = (self.cost(fam, m, self.q_scale(s)), self.q_scale(s))
        for step in steps:
            centre = best[1]
            for mult in (2.0 ** -step, 2.0 ** step):
                cand = self.q_scale(centre * mult)
                c = self.cost(fam, m, cand)
                if c < best[0]:
                    best = (c, cand)
        return best

    def run(self):
        if len(self.vals) == 1:
            v = float(self.vals[0])
            m = self.q_mean(v)
            if m == v:
                return spec.Family.LAPLACE, m, self.q_scale(_F16_MIN_SCALE)
        candidates = []
        for fam, m, s in self.starts():
            m = self.q_mean(m)
            cost, sc = self.search_scale(fam, m, s, (1.0, 0.5))
            candidates.append((cost, fam, m, sc))
        candidates.sort()
        cost, fam, m, s = candidates[0]
        # refine the winner: scale, then mean, then scale again
        cost, s = self.search_scale(fam, m, s, (0.25, 0.125, 0.0625))
        for step in (0.5, 0.25, 0.125):
            for cand in (self.q_mean(m - step), self.q_mean(m + step)):
                c = self.cost(fam, cand, s)
                if c < cost:
                    cost, m = c, cand
        cost, s = self.search_scale(fam, m, s, (0.0625, 0.03125))
        return fam, m, s


class RangeCoder:
    """constriction range coding (u32 words, 24-bit probabilities) under a per-channel
    parametric model fitted per array (per chunk) and stored in the payload."""

    name = "range"
    coder_id = spec.CoderId.RANGE

    def encode(self, symbols) -> bytes:
        return self._encode(symbols)[0]

    def _encode(self, symbols):
        x, _ = as_channels(symbols)
        c, n = x.shape
        if x.size == 0:
            return b"", {"side": 0, "esc": 0, "words": 0, "model_bits": 0.0}
        fams, means, scales = [], [], []
        enc = constriction.stream.queue.RangeEncoder()
        escapes = []
        model_bits = 0.0
        for ch in x:
            fam, m, s = _Fit(ch).run()
            fams.append(fam)
            means.append(m)
            scales.append(s)
            lo, f, fbits = _cached_table(fam, m, s)
            k = f.size
            idx = np.minimum(np.maximum(ch - lo, 0), k - 1)
            model_bits += float(fbits[idx].sum())
            low = ch <= lo
            high = ch >= lo + k - 1
            esc = low | high
            if esc.any():
                escapes.append(np.where(low, lo - ch, ch - (lo + k - 1))[esc])
            model = constriction.stream.model.Categorical((f - 1).astype(np.float32), perfect=False)
            enc.encode(idx.astype(np.int32), model)
        words = enc.get_compressed().astype("<u4")
        side = _encode_params(fams, means, scales)
        esc_bytes = _varint_encode(np.concatenate(escapes)) if escapes else b""
        payload = side + spec.RANGE_WORDS.pack(words.size) + words.tobytes() + esc_bytes
        return payload, {"side": len(side) + spec.RANGE_WORDS.size, "esc": len(esc_bytes),
                         "words": int(words.size), "model_bits": model_bits,
                         "params": list(zip(fams, means, scales))}

    def decode(self, payload: bytes, shape: Sequence[int], what: str = "chunk") -> np.ndarray:
        c, n = _channels_of(shape)
        if c * n == 0:
            if payload:
                raise CorruptRecord(f"{what}: payload for an empty array")
            return np.zeros(shape, dtype=np.int32)
        if c * n > spec.MAX_CHUNK_SYMBOLS:
            raise LimitExceeded(f"{what}: {c * n} symbols exceeds {spec.MAX_CHUNK_SYMBOLS}")
        fams, means, scales, pos = _decode_params(payload, c, what)
        (nwords,) = spec.RANGE_WORDS.unpack_from(payload, pos)
        pos += spec.RANGE_WORDS.size
        if nwords * 4 > len(payload) - pos:
            raise CorruptRecord(f"{what}: {nwords} range words announced, payload too short")
        words = np.frombuffer(payload, dtype="<u4", count=nwords, offset=pos).astype(np.uint32)
        pos += 4 * nwords
        dec = _constriction_call(lambda: constriction.stream.queue.RangeDecoder(words), what)
        out = np.empty((c, n), dtype=np.int64)
        esc_pos = []  # (channel, low positions, high positions, lo, hi)
        n_esc = 0
        for i in range(c):
            try:
                lo, f, _ = _cached_table(fams[i], means[i], scales[i])
            except CorruptRecord as e:
                raise CorruptRecord(f"{what}: channel {i}: {e}") from None
            k = f.size
            model = constriction.stream.model.Categorical((f - 1).astype(np.float32), perfect=False)
            idx = _constriction_call(lambda: dec.decode(model, n), what)
            idx = np.asarray(idx, dtype=np.int64)
            if idx.shape != (n,) or (n and (idx.min() < 0 or idx.max() >= k)):
                raise CorruptRecord(f"{what}: channel {i}: decoded symbols out of the model's range")
            out[i] = idx + lo
            lows = np.flatnonzero(idx == 0)
            highs = np.flatnonzero(idx == k - 1)
            if lows.size or highs.size:
                esc_pos.append((i, lows, highs, lo, lo + k - 1))
                n_esc += lows.size + highs.size
        esc = _varint_decode(payload[pos:], n_esc, what)
        j = 0
        for i, lows, highs, lo, hi in esc_pos:
            both = np.concatenate([lows, highs])
            order = np.argsort(both, kind="stable")
            vals = esc[j:j + both.size]
            j += both.size
            sign = np.where(order < lows.size, -1, 1)  # escapes follow symbol order
            base = np.where(order < lows.size, lo, hi)
            out[i, both[order]] = base + sign * vals
        if out.size and (out.min() < spec.SYMBOL_MIN or out.max() > spec.SYMBOL_MAX):
            raise CorruptRecord(f"{what}: escaped symbol outside int32")
        return out.astype(np.int32).reshape(shape)

    def measure(self, symbols) -> CodedSize:
        x, _ = as_channels(symbols)
        payload, info = self._encode(x)
        return CodedSize("range", int(x.size), len(payload), info["side"], info["esc"],
                         4 * info["words"], info["model_bits"],
                         sum(_entropy_bits(ch) for ch in x))


# ------------------------------------------------------------------------------------------------
# registry
# ------------------------------------------------------------------------------------------------
ENTROPY_CODERS = {"zstd": ZstdCoder, "range": RangeCoder}


def make_coder(name: str, params: dict | None = None):
    """A coder instance for a header's entropy_coder / full_entropy_params()."""
    params = params or {}
    if name == "zstd":
        return ZstdCoder(level=params.get("level", 19))
    if name == "range":
        return RangeCoder()
    raise ValueError(f"unknown entropy coder {name!r}; known: {sorted(ENTROPY_CODERS)}")


def measure(symbols, coder: str | None = None) -> dict[str, CodedSize] | CodedSize:
    """Real coded size of `symbols` (first axis = channels) under one coder, or a dict over
    all coders when coder is None."""
    if coder is not None:
        return make_coder(coder).measure(symbols)
    return {name: make_coder(name).measure(symbols) for name in ENTROPY_CODERS}


def best_coder(symbols) -> str:
    """The coder that gives fewer real bytes for `symbols`."""
    sizes = measure(symbols)
    return min(sizes, key=lambda k: (sizes[k].total_bytes, k != "range"))


__all__ = [
    "BitstreamError", "CodedSize", "ZstdCoder", "RangeCoder", "ENTROPY_CODERS", "make_coder",
    "measure", "best_coder", "model_table", "as_channels",
]
