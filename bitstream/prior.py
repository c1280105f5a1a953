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
Rate Adaptation"), then to integers: a centre symbol, a mean offset in eighths of a symbol and an index into a
frozen table of scales (eighth-octave steps). (scale index, offset) names one of SCALES * 8 frequency tables, built
from the frozen EXP2_Q30 table exactly as the `range` coder builds its tables.

Inside one pass, symbols are coded grouped by table (ascending table id), each group in C-order of
(channel, y, x): the decoder knows every table id of a pass before it decodes the pass, and one
constriction call per group keeps the coder fast. Chunk payload (docs/bitstream.md has the
draft): u32 M, M u32 range-coder words, LEB128 escape values (one per escaped symbol, in coding
order), exactly as in the `range` coder.

The coder lives here with the weights it is built from (PriorArch, PriorWeights and their file); the integer
network is prior_net.py, the frozen numbers and frequency tables prior_tables.py. Together the three are one
bit-exact contract with docs/bitstream.md (and the reference decoder written from it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import constriction
import numpy as np

from . import spec
from .atomic import write_atomically
from .entropy import _constriction_call, _varint_decode, _varint_encode
from .errors import CorruptRecord, UnsupportedFeature
from .prior_net import BIAS_LIMIT, WEIGHT_LIMIT, PriorNet, anchor_mask, dequantize_fixed
from .prior_tables import FAMILIES, FAMILY_GAUSS, steps_fixed, table_bits, table_ids, table_model


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
        if self.family not in FAMILIES or not (4 <= self.act_bits <= 12 and 4 <= self.weight_bits <= 16):
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
            lo_off, f, model = table_model(fam, int(tid[g[0]]))
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
            lo_off, f, model = table_model(fam, int(tid[g[0]]))
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
