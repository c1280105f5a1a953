"""uint8 RGB frames <-> the model's value range, written once (codec, metrics and training share it)."""

from __future__ import annotations

import numpy as np
import torch


def from_uint8(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (3, T, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float()
    return x.div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] (clamped here) -> uint8 (T, H, W, 3), rounded to the nearest level."""
    x = x.clamp(-1, 1)
    return ((x + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()
