"""The integer prior's network, the decoder's definition of it: fixed-point convolutions in int64 numpy
(exact and order-free: numpy computes integer matmuls exactly, in any order), so every decoder rebuilds the
encoder's predictions bit for bit on any CPU, thread count, BLAS or numpy version (docs/bitstream.md has the
layer table; cdtcodec/rate/prior_twin.py is its float twin for training).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import spec
from .prior_tables import STEP_BITS, log2_fixed

if TYPE_CHECKING:
    from .prior import PriorWeights

ACT_LIMIT = 1 << 20  # activations are clipped to +-ACT_LIMIT (keeps every product far below 2^63)
WEIGHT_LIMIT = 1 << 20
BIAS_LIMIT = 1 << 50


# ------------------------------------------------------------------------------------------------
# fixed-point arithmetic
# ------------------------------------------------------------------------------------------------
def condition_log2_step(step_q: np.ndarray, frac_bits: int) -> int:
    """The prior's conditioning input: floor(mean over channels of floor(log2 step_c * 2^frac_bits)), the log2
    of the steps' geometric mean. Why one scalar: the network was trained with one step per sample, and the
    per-channel steps already reach it where they matter (each channel's context dequantized with its own step,
    each prediction turned into symbols with its own step); the geometric mean is the scalar whose log is the
    mean log-step, the "overall coarseness" a gain vector at equal geometric mean leaves unchanged (gain
    vectors are normalised that way), and with equal steps it is that step's log2 exactly (layout 1)."""
    logs = [log2_fixed(int(q), frac_bits) for q in step_q]
    return sum(logs) // len(logs)


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
# the network
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
