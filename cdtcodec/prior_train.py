"""Training the conditional latent prior (bitstream/prior.py) on latents of the training footage.

The CDT encoder stays frozen: its posterior means of random clips are computed once and cached in
one .npz file outside the repository, then the small torch twin (cdtcodec/entropy_model.py) is
trained on them at several quantizer steps, and its weights are exported as the integer prior.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

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

    Training windows are ClipDataset's (random segment, start, scale in [0.5, 1], crop, flip), so the cache
    sees the same kind of material as the tokenizer's own training."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    dataset = ClipDataset(data, frames=frames, size=size, split="train", seed=seed, min_scale=0.5)
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
