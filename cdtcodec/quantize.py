"""Latents <-> integer symbols: the one home of step sizes and of the quality scale.

Uniform scalar quantization with one step size per file (stored in the header): symbols = round(z / step).
A larger step means fewer bits and more distortion. The quality scale is geometric, a factor sqrt(2) in
step per level, so each level roughly trades the same number of bits per latent for distortion.
"""

from __future__ import annotations

import numpy as np

# quality 1 (smallest files) .. 8 (best quality); steps in latent units (latent std is about 1 to 3).
QUALITY_STEPS: dict[int, float] = {q: round(2.0 * 2 ** (-(q - 1) / 2), 4) for q in range(1, 9)}
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
