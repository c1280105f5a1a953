"""Latents <-> integer symbols: the one home of step sizes and of the quality scale.

Uniform scalar quantization with one step size per file (stored in the header): symbols = round(z / step).
A larger step means fewer bits and more distortion. A decoder reads the step from the header, so the scale
below can change without touching a single file already written.

The quality scale is one octave of step per level, 8 (quality 1) .. 1/16 (quality 8), with the default,
quality 5, at step 0.5. It was fitted by measurement (benchmarks/quality_scale.py, README "Rate"): with
cdt-tiny v3 and its prior it spans about 0.02 .. 0.3 bpp at 256x256 on the bench clips, every level its own
rate. The model's reconstruction, not quantization, bounds the quality from step 0.5 down: levels 5..8 cost
more bits for under 0.1 dB. The former scale (sqrt(2) per level, 2 .. 0.177) spanned only 0.03 .. 0.13 bpp
once the prior had taken its bits away. Rate control (rate_control.py) uses any step the prior covers.
"""

from __future__ import annotations

import numpy as np

# quality 1 (smallest files) .. 8 (best quality); steps in latent units (latent std is about 2 to 4).
QUALITY_STEPS: dict[int, float] = {q: 2.0 ** (4 - q) for q in range(1, 9)}
# the steps the scale spans: the prior is trained (and the training's rate term taken) over this range
QUALITY_STEP_RANGE = (min(QUALITY_STEPS.values()), max(QUALITY_STEPS.values()))
DEFAULT_QUALITY = 5
# Below this the symbols of ordinary latents (|z| up to ~100) leave the 32-bit range the format holds
# (1e-30 once wrapped around silently); quantize() also checks each chunk, whatever the step.
MIN_STEP = 1e-6
SYMBOL_LIMIT = 2**31 - 1


def step_for_quality(quality: int) -> float:
    if quality not in QUALITY_STEPS:
        raise ValueError(f"quality must be in {min(QUALITY_STEPS)}..{max(QUALITY_STEPS)}")
    return QUALITY_STEPS[quality]


# torch is imported where it is used, so the quality scale is readable without loading it (the CLI's options)


def quantize(latent, step: float) -> np.ndarray:
    """(C, t, h, w) float torch latent -> int32 symbols."""
    import torch

    if not step > 0:
        raise ValueError("quantizer step must be > 0")
    q = torch.round(latent.float() / step)
    if q.numel() and not (torch.isfinite(q).all() and q.abs().max() <= SYMBOL_LIMIT):
        raise ValueError(f"quantizer step {step:g} is too small for these latents: symbols beyond 32 bits")
    return q.to(torch.int32).cpu().numpy()


def dequantize(symbols: np.ndarray, step: float):
    """int32 symbols -> float32 torch latent."""
    import torch

    return torch.from_numpy(symbols.astype(np.float32)) * step


def roundtrip(latent, step: float):
    """(C, t, h, w) torch latent -> the latent a decoder gets from its symbols, on the latent's device and dtype."""
    return dequantize(quantize(latent, step), step).to(latent)
