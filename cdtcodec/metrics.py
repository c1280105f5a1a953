"""Distortion metrics, the one home of PSNR, SSIM and the clip report shared by demo, bench and training.

Tensors are (B, 3, T, H, W) or (N, 3, H, W) in [-1, 1]; arrays are uint8 RGB (T, H, W, 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from cdtcodec.pixels import from_uint8


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """10 log10(peak^2 / mse) in dB; infinite for a zero error."""
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB of two [-1, 1] tensors, on the [0, 1] scale (peak 1)."""
    return psnr_from_mse(torch.mean(((x.float() - y.float()) / 2) ** 2).item(), peak=1.0)


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
    def blur(t):
        return F.conv2d(t, window, groups=c)
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(dim=1)


def _finite(value: float) -> float | None:
    """A PSNR as stored: None for a zero error (infinite PSNR), which JSON cannot hold."""
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class ClipQuality:
    """One decoded clip against its source: per-clip values and the per-frame lists behind them."""

    psnr_rgb: float | None  # from the clip's mean squared error; None when it is zero
    psnr_y: float | None  # BT.601 luma, likewise
    psnr_rgb_frame_mean: float | None  # mean of the finite per-frame PSNRs
    ssim: float
    lpips: float
    per_frame: dict[str, list] = field(default_factory=dict)  # psnr_rgb, psnr_y, ssim, lpips

    def summary(self) -> dict[str, float | None]:
        return {k: getattr(self, k) for k in ("psnr_rgb", "psnr_y", "psnr_rgb_frame_mean", "ssim", "lpips")}


def clip_quality(src: np.ndarray, dec: np.ndarray, lpips) -> ClipQuality:
    """PSNR (RGB, Y), SSIM and LPIPS of decoded uint8 (T, H, W, 3) frames against the source frames."""
    if src.shape != dec.shape:
        raise ValueError(f"decoded frames {dec.shape} do not match the source {src.shape}")
    diff = src.astype(np.float64) - dec.astype(np.float64)
    mse = (diff**2).mean(axis=(1, 2, 3))
    mse_y = ((rgb_to_luma(src) - rgb_to_luma(dec)) ** 2).mean(axis=(1, 2))
    # float32: 25x faster than float64 on CPU, and within 1e-6 of it (SSIM is in [-1, 1])
    def to01(a):
        return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 255.0
    def to11(a):
        return from_uint8(a).transpose(0, 1)
    ssims, lp = [], []
    with torch.no_grad():
        for i in range(0, len(src), 8):
            ssims += ssim(to01(src[i:i + 8]), to01(dec[i:i + 8])).tolist()
            lp += lpips(to11(src[i:i + 8]), to11(dec[i:i + 8])).tolist()
    per_frame = {"psnr_rgb": [_finite(psnr_from_mse(m)) for m in mse],
                 "psnr_y": [_finite(psnr_from_mse(m)) for m in mse_y], "ssim": ssims, "lpips": lp}
    finite = [p for p in per_frame["psnr_rgb"] if p is not None]
    return ClipQuality(psnr_rgb=_finite(psnr_from_mse(float(mse.mean()))),
                       psnr_y=_finite(psnr_from_mse(float(mse_y.mean()))),
                       psnr_rgb_frame_mean=float(np.mean(finite)) if finite else None,
                       ssim=float(np.mean(ssims)), lpips=float(np.mean(lp)), per_frame=per_frame)
