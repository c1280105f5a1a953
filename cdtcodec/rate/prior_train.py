"""Training the conditional latent prior (bitstream/prior.py) on latents of the training footage.

The CDT encoder stays frozen: its posterior means of random clips are computed once and cached in
one .npz file outside the repository, then the small torch twin (cdtcodec/rate/prior_twin.py) is
trained on them at several quantizer steps, and its weights are exported as the integer prior.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cdtcodec.rate.quantize import QUALITY_STEP_RANGE
from cdtcodec.train.config import TrainConfig
from cdtcodec.train.data import ClipDataset, validation_clips

Log = Callable[[str], None]


# ---------------------------------------------------------------------------------------------------------
# latent cache

def encode_clips(net, clips, log: Log | None = None) -> np.ndarray:
    """Posterior means of (3, T, H, W) clips in [-1, 1] -> float32 (N, C, T', h, w)."""
    out = []
    started = time.time()
    with torch.no_grad():
        for i, clip in enumerate(clips):
            out.append(net.encode(clip.unsqueeze(0))[0].float().numpy())
            if log and (i + 1) % 10 == 0:
                log(f"  {i + 1} clips encoded ({time.time() - started:.0f} s)")
    return np.stack(out)


def cache_latents(data: str | Path, path: str | Path, net, *, clips: int = 160, frames: int = 33,
                  size: int = 256, val_clips: int = 8, seed: int = 0, log: Log | None = None) -> Path:
    """Encode `clips` random training windows and the validation clips once; store both in `path` (.npz).

    Training windows are ClipDataset's (random segment, start, scale in [0.5, 1], crop, flip) with the
    training run's shares of each kind, so the cache sees the same material as the tokenizer's own training."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    dataset = ClipDataset(data, frames=frames, size=size, split="train", seed=seed, min_scale=0.5,
                          kind_mix=dict(TrainConfig.kind_mix))
    train = encode_clips(net, (dataset.sample(rng) for _ in range(clips)), log)
    val = encode_clips(net, validation_clips(data, frames=frames, size=size, count=val_clips), log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, train=train, val=val)
    tmp.replace(path)
    return path


def load_latents(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) float32 arrays (N, C, T', h, w) from a cache written by cache_latents."""
    with np.load(path) as f:
        return f["train"], f["val"]


# ---------------------------------------------------------------------------------------------------------
# training

@dataclass(frozen=True)
class PriorTrainConfig:
    iterations: int = 1500
    batch: int = 16  # clips per step (each clip: all its latent frames)
    crop: int = 16  # latent crop side: the network sees 7x7 latents, so small crops train as well, cheaper
    lr: float = 3e-3
    # quantizer steps drawn log-uniformly: the quality scale and half an octave beyond each end
    step_range: tuple[float, float] = (QUALITY_STEP_RANGE[0] / 2 ** 0.5, QUALITY_STEP_RANGE[1] * 2 ** 0.5)
    fake_quant_iterations: int = 200  # the last ones simulate the integer rounding (straight-through)
    seed: int = 0


def _batch(latents: np.ndarray, cfg: PriorTrainConfig, rng: np.random.Generator):
    """Random clips, flips and steps -> (symbols (B, C, T, h, w) float tensor, steps (B,))."""
    pick = rng.integers(0, latents.shape[0], cfg.batch)
    h, w = latents.shape[-2:]
    crop = min(cfg.crop, h, w)
    y0 = rng.integers(0, h - crop + 1, cfg.batch)
    x0 = rng.integers(0, w - crop + 1, cfg.batch)
    z = np.stack([latents[p, :, :, y:y + crop, x:x + crop] for p, y, x in zip(pick, y0, x0)])
    flip_h = rng.random(cfg.batch) < 0.5
    z = np.where(flip_h[:, None, None, None, None], z[..., ::-1], z)
    lo, hi = np.log(cfg.step_range[0]), np.log(cfg.step_range[1])
    steps = np.exp(rng.uniform(lo, hi, cfg.batch)).astype(np.float32)
    symbols = np.round(z / steps[:, None, None, None, None])
    return torch.from_numpy(symbols.astype(np.float32)), torch.from_numpy(steps)


def float_bits(prior, latents: np.ndarray, steps, fake_quant: bool = False) -> dict[float, float]:
    """Mean estimated bits per symbol of the float twin on `latents` at each quantizer step."""
    out = {}
    with torch.no_grad():
        for step in steps:
            total, count = 0.0, 0
            for i in range(0, latents.shape[0], 4):
                sym = torch.from_numpy(np.round(latents[i:i + 4] / step).astype(np.float32))
                bits = prior.bits(sym, torch.full((sym.shape[0],), float(step)), fake_quant)
                total += float(bits.sum())
                count += bits.numel()
            out[float(step)] = total / count
    return out


def train_prior(train: np.ndarray, val: np.ndarray, arch, cfg: PriorTrainConfig = PriorTrainConfig(),
                log: Log | None = None):
    """Fit the float twin on cached latents (encoder frozen); return it (call rate.prior_twin.to_integer)."""
    from cdtcodec.rate.prior_twin import ConditionalPrior

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    prior = ConditionalPrior(arch)
    opt = torch.optim.Adam(prior.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.iterations, pct_start=0.05)
    started = time.time()
    running = None
    for it in range(cfg.iterations):
        fake = it >= cfg.iterations - cfg.fake_quant_iterations
        symbols, steps = _batch(train, cfg, rng)
        loss = prior.bits(symbols, steps, fake_quant=fake).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
        opt.step()
        sched.step()
        value = float(loss.detach())
        running = value if running is None else 0.95 * running + 0.05 * value
        if log and ((it + 1) % 100 == 0 or it == 0):
            msg = f"  it {it + 1}/{cfg.iterations}  train {running:.4f} bits/symbol  ({time.time() - started:.0f} s)"
            if (it + 1) % 500 == 0 and len(val):
                est = float_bits(prior, val, (0.5,))
                msg += f"  val@0.5 {est[0.5]:.4f}"
            log(msg)
    return prior
