"""The torch twin of the integer latent prior (bitstream/prior.py): training, the differentiable rate
term, and the export to integer weights.

The twin is the same network in float: same layers, same inputs in the same channel order, same
'same'-padded convolutions, outputs (mean, log2 scale) in latent units. Trained in float, it is then
rounded to the fixed-point format (weights 2^-12, activations 2^-8); `fake_quant=True` simulates that
rounding (straight-through) so a short fine-tune can close the small gap, and the benchmark checks
the integer coder's real bytes against the float estimate.

Layouts: latents (B, C, T, h, w) in latent units (dequantized symbols, symbols * step); step (B,) (one per
sample) or (B, C) (one per sample and channel: the gain vectors of layout-2 files, Cui et al. CVPR 2021). As in
the integer prior, each channel is turned into symbols with its own step and the network is conditioned on the
log2 of the steps' geometric mean (bitstream/prior_net.py condition_log2_step says why).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bitstream.prior import PriorArch, PriorWeights
from bitstream.prior_tables import FAMILY_GAUSS, SCALE_MIN_LOG2, SCALE_OCTAVE_STEPS, SCALES

LOG2_SCALE_MIN = float(SCALE_MIN_LOG2)  # symbol units: the integer coder clips to its table
LOG2_SCALE_MAX = SCALE_MIN_LOG2 + (SCALES - 1) / SCALE_OCTAVE_STEPS
_MIN_PROB = 2.0 ** -24  # the coder's smallest probability is about 2^-24


def _round_ste(x: torch.Tensor, unit: float) -> torch.Tensor:
    return x + (torch.round(x / unit) * unit - x).detach()


def step_matrix(step, batch: int, channels: int, device=None) -> torch.Tensor:
    """Quantizer step(s) -> float (B, C): a number, (B,) one per sample, (C,) given as (1, C) or (B, C)."""
    s = torch.as_tensor(step, dtype=torch.float32, device=device)
    if s.ndim == 0:
        return s.expand(batch, channels)
    if s.ndim == 1:
        return s.view(-1, 1).expand(batch, channels)
    if s.ndim == 2 and s.shape[1] == channels:
        return s.expand(batch, channels)
    raise ValueError(f"step must be a number, (B,), (1, C) or (B, C) with C={channels}, got {tuple(s.shape)}")


class ConditionalPrior(nn.Module):
    """Predicts (mean, log2 scale) of every latent from the previous decoded frame(s), for the
    checkerboard's second pass also from the decoded anchors of its own frame, and for channel group g
    also from groups < g at the same position."""

    def __init__(self, arch: PriorArch = PriorArch()):
        super().__init__()
        arch.validate()
        self.arch = arch
        self.convs = nn.ModuleDict({_key(name): nn.Conv2d(cin, cout, k, padding=k // 2)
                                    for name, (k, cin, cout) in arch.layers().items()})
        self.condition = nn.Linear(arch.conditions, arch.layers()["trunk1"][2], bias=False)
        with torch.no_grad():  # start near "mean 0, scale one latent unit"
            for sp, g in arch.passes():
                self.layer(f"pass{sp}{g}.out").weight.mul_(0.1)
                self.layer(f"pass{sp}{g}.out").bias.zero_()

    def layer(self, name: str) -> nn.Conv2d:
        """The conv of integer-prior layer `name` (ModuleDict keys cannot hold dots)."""
        return self.convs[_key(name)]

    def _conv(self, name: str, x: torch.Tensor, fake_quant: bool) -> torch.Tensor:
        conv = self.layer(name)
        w, b = conv.weight, conv.bias
        if fake_quant:
            a = self.arch
            w = _round_ste(w, 2.0 ** -a.weight_bits)
            b = _round_ste(b, 2.0 ** -(a.weight_bits + a.act_bits))
        y = F.conv2d(x, w, b, padding=conv.padding)
        return _round_ste(y, 2.0 ** -self.arch.act_bits) if fake_quant else y

    def forward(self, y_hat: torch.Tensor, step: torch.Tensor, fake_quant: bool = False):
        """y_hat (B, C, T, h, w) latent units; step (B,) or (B, C) -> mean, log2 scale (B, C, T, h, w), latent
        units.

        Frame t sees frames t-1 .. t-prev_frames (zeros and a 0 flag before the clip starts), as the
        decoder does for a file's first frames."""
        a = self.arch
        b, c, t, h, w = y_hat.shape
        shifted = [F.pad(y_hat, (0, 0, 0, 0, k, 0))[:, :, :t] for k in range(1, a.prev_frames + 1)]
        frames = lambda v: v.permute(0, 2, 1, 3, 4).reshape(b * t, -1, h, w)  # noqa: E731
        x = torch.cat([frames(s) for s in shifted], dim=1)
        # the geometric mean's log2, as the integer prior's condition_log2_step
        log2_step = torch.log2(step_matrix(step, b, c, y_hat.device)).mean(1).view(b, 1).expand(b, t)
        flags = [(torch.arange(t, device=y_hat.device) >= k).float().view(1, t).expand(b, t)
                 for k in range(1, a.prev_frames + 1)]
        cond = torch.stack([log2_step] + flags, dim=-1).reshape(b * t, -1)
        if fake_quant:
            cond = _round_ste(cond, 2.0 ** -a.act_bits)
            cw = _round_ste(self.condition.weight, 2.0 ** -a.weight_bits)
        else:
            cw = self.condition.weight
        extra = (cond @ cw.t()).view(b * t, -1, 1, 1)
        feats = F.relu(self._conv("trunk1", x, fake_quant) + extra)
        feats = F.relu(self._conv("trunk2", feats, fake_quant))
        prev = frames(shifted[0])
        current = frames(y_hat)
        mask = torch.from_numpy(_anchor_mask(h, w)).to(y_hat.device)
        bases = [feats]
        if a.checkerboard:
            bases.append(F.relu(self._conv("context1", torch.cat([feats, current * mask], 1), fake_quant)))
        # Every (spatial pass, channel group) at once, teacher-forced: the decoder holds exactly these inputs.
        means, scales = [], []
        gs = a.group_size
        for g in range(a.channel_groups):
            known = torch.cat([current[:, :g * gs], torch.zeros_like(current[:, g * gs:])], 1)
            outs = []
            for sp, base in enumerate(bases):
                hid = F.relu(self._conv(f"pass{sp}{g}.hidden", torch.cat([base, prev, known], 1), fake_quant))
                outs.append(self._conv(f"pass{sp}{g}.out", hid, fake_quant))
            out = torch.where(mask, outs[0], outs[1]) if a.checkerboard else outs[0]
            means.append(out[:, :gs])
            scales.append(out[:, gs:])
        shape = lambda v: v.view(b, t, c, h, w).permute(0, 2, 1, 3, 4)  # noqa: E731
        return shape(torch.cat(means, 1)), shape(torch.cat(scales, 1))

    def bits(self, symbols: torch.Tensor, step: torch.Tensor, fake_quant: bool = False) -> torch.Tensor:
        """Ideal code length in bits of integer symbols (B, C, T, h, w), per element (same shape); step (B,) or
        (B, C)."""
        b, c = symbols.shape[:2]
        steps = step_matrix(step, b, c, symbols.device)
        step5 = steps.view(b, c, 1, 1, 1)
        y_hat = symbols.float() * step5
        mean, log2_scale = self(y_hat, steps, fake_quant)
        return discretized_bits(symbols.float(), mean / step5, log2_scale - torch.log2(step5), self.arch.family)


def _key(name: str) -> str:
    return name.replace(".", "_")


def _anchor_mask(h: int, w: int) -> np.ndarray:
    return (np.add.outer(np.arange(h), np.arange(w)) % 2) == 0


def discretized_bits(x: torch.Tensor, mean: torch.Tensor, log2_scale: torch.Tensor, family: int) -> torch.Tensor:
    """-log2 P(x) for x on the integer grid (symbol units), P the bin [x-1/2, x+1/2] of a Gaussian
    (family 0) or Laplace (1) with that mean and scale; the scale clipped to the coder's table."""
    scale = torch.exp2(log2_scale.clamp(LOG2_SCALE_MIN, LOG2_SCALE_MAX))
    d = (x - mean).abs()  # symmetric: use the upper tail for accuracy
    hi, lo = (0.5 - d) / scale, (-0.5 - d) / scale
    if family == FAMILY_GAUSS:
        cdf = lambda v: 0.5 * torch.erfc(-v / math.sqrt(2.0))  # noqa: E731
        p = cdf(hi) - cdf(lo)
    else:
        # Laplace CDF; hi may be on either side of 0, lo < 0
        cdf = lambda v: torch.where(v < 0, 0.5 * torch.exp(v.clamp(max=0)), 1 - 0.5 * torch.exp(-v.clamp(min=0)))  # noqa: E731
        p = cdf(hi) - cdf(lo)
    return -torch.log2(p.clamp(min=_MIN_PROB))


def rate_bits(prior: ConditionalPrior, latent: torch.Tensor, step: float | torch.Tensor,
              mode: str = "noise") -> torch.Tensor:
    """Differentiable estimate of the bits the prior coder spends on `latent` (B, C, T, h, w), continuous
    encoder output in latent units, at quantizer `step` (a number, (B,), or (1, C) / (B, C) per channel);
    returns a scalar (total bits).

    mode "noise": additive uniform noise of one step stands in for rounding (Balle et al.); "ste": real
    rounding, straight-through gradient. Gradients reach the latent and the prior's parameters."""
    b, c = latent.shape[:2]
    step_t = step_matrix(step, b, c, latent.device).to(latent.dtype)
    step5 = step_t.view(b, c, 1, 1, 1)
    if mode == "noise":
        y = latent + (torch.rand_like(latent) - 0.5) * step5
    elif mode == "ste":
        y = latent + (torch.round(latent / step5) * step5 - latent).detach()
    else:
        raise ValueError(f"mode must be 'noise' or 'ste', got {mode!r}")
    mean, log2_scale = prior(y, step_t)
    return discretized_bits(y / step5, mean / step5, log2_scale - torch.log2(step5), prior.arch.family).sum()


# ---------------------------------------------------------------------------------------------------------
# export

def to_integer(prior: ConditionalPrior) -> PriorWeights:
    """Round the float twin to the integer prior's fixed-point format."""
    a = prior.arch
    wscale, bscale = 2.0 ** a.weight_bits, 2.0 ** (a.weight_bits + a.act_bits)
    tensors = {}
    for name, (k, cin, cout) in a.layers().items():
        conv = prior.layer(name)
        w = conv.weight.detach().double()  # (out, in, ky, kx) -> (ky, kx, in) rows, out columns
        rows = w.permute(2, 3, 1, 0).reshape(k * k * cin, cout).numpy()
        tensors[f"{name}.weight"] = np.round(rows * wscale).astype(np.int64)
        tensors[f"{name}.bias"] = np.round(conv.bias.detach().double().numpy() * bscale).astype(np.int64)
    condition = prior.condition.weight.detach().double().t().numpy()
    tensors["trunk1.condition"] = np.round(condition * wscale).astype(np.int64)
    return PriorWeights(a, tensors)


def from_integer(weights: PriorWeights) -> ConditionalPrior:
    """The float twin holding exactly the integer weights (for fine-tuning or a float reference)."""
    a = weights.arch
    prior = ConditionalPrior(a)
    wscale, bscale = 2.0 ** a.weight_bits, 2.0 ** (a.weight_bits + a.act_bits)
    with torch.no_grad():
        for name, (k, cin, cout) in a.layers().items():
            conv = prior.layer(name)
            w = torch.from_numpy(weights[f"{name}.weight"].astype(np.float64) / wscale)
            conv.weight.copy_(w.reshape(k, k, cin, cout).permute(3, 2, 0, 1))
            conv.bias.copy_(torch.from_numpy(weights[f"{name}.bias"].astype(np.float64) / bscale))
        prior.condition.weight.copy_(torch.from_numpy(weights["trunk1.condition"].astype(np.float64) / wscale).t())
    return prior
