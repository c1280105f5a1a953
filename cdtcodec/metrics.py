"""Distortion metrics on videos. Tensors are (B, 3, T, H, W) or (N, 3, H, W) in [-1, 1]; arrays uint8 RGB."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB of two [-1, 1] tensors, on the [0, 1] scale (peak 1)."""
    mse = torch.mean(((x.float() - y.float()) / 2) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)


def rgb_to_luma(frames: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) RGB -> float64 (...) BT.601 luma in 0..255 (the Y that PSNR-Y is usually reported on)."""
    f = frames.astype(np.float64)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - size // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03) of (N, C, H, W) images
    in [0, 1], averaged over channels and valid pixels; returns (N,)."""
    c = x.shape[1]
    window = _gaussian_window().to(x)[None, None].expand(c, 1, -1, -1)
    blur = lambda t: F.conv2d(t, window, groups=c)
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(dim=1)
