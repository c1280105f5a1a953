"""The diffusion process, apart from the network: cosine schedule, x0-prediction DDIM, the sampling loop.

In the manner of k-diffusion: the network is a callable handed to `sample`, which owns the step loop and
reports each step through an optional callback (so progress reporting stays with the caller). The decode
noise is a function of (seed, frame index) alone, so chunking a video cannot change it.
"""

from __future__ import annotations

import hashlib
import math
from typing import Callable

import torch


def cosine_alphas_cumprod(num_timesteps: int) -> torch.Tensor:
    """alpha-bar_t for t = 0..N-1 (float32), built in float64 exactly as the official schedule."""
    n = num_timesteps
    steps = torch.arange(n + 1, dtype=torch.float64) / n
    f = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(0, 0.999)
    return torch.cumprod(1 - betas, dim=0).to(torch.float32)


def sampling_indices(num_timesteps: int, steps: int) -> list[int]:
    """The timesteps visited by an S-step DDIM, ascending: [N-1] for one step, else floor(i (N-1) / (S-1))."""
    if steps < 1:
        raise ValueError("sampling steps must be >= 1")
    if steps == 1:
        return [num_timesteps - 1]
    return [(i * (num_timesteps - 1)) // (steps - 1) for i in range(steps)]


# predict_x0(x_t, tau) -> x0_hat, with tau = t / N of shape (B, 1)
Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# network(x_t, tau, k) -> x0_hat at sampling step k (steps count down: S-1 first, 0 last)
StepNetwork = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
# callback(k, x) after step k, with x the state it produced
StepCallback = Callable[[int, torch.Tensor], None]


def ddim_step(predict_x0: Predictor, x: torch.Tensor, t: int, t_prev: int | None,
              alphas_cumprod: torch.Tensor, num_timesteps: int) -> torch.Tensor:
    """One deterministic (eta = 0) DDIM update from timestep t to t_prev (None: to the clean video)."""
    tau = torch.full((x.shape[0], 1), float(t) / num_timesteps, dtype=x.dtype, device=x.device)
    x0 = predict_x0(x, tau).to(x.dtype)
    if t_prev is None:
        return x0  # a_prev = 1: the update returns x0 exactly
    a = alphas_cumprod[t].to(x.device, x.dtype)  # float32 scalars in fp32, as the official update
    a_prev = alphas_cumprod[t_prev].to(x.device, x.dtype)
    eps = (torch.sqrt(1 / a) * x - x0) / torch.sqrt(1 / a - 1)
    return torch.sqrt(a_prev) * x0 + torch.sqrt((1 - a_prev).clamp(min=0)) * eps


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Forward process for training: x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise, t of shape (B,)."""
    a = alphas_cumprod.to(x0.device)[t].view(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def sample(network: StepNetwork, x: torch.Tensor, steps: int, alphas_cumprod: torch.Tensor, num_timesteps: int,
           callback: StepCallback | None = None) -> torch.Tensor:
    """Deterministic DDIM from x (already scaled noise) in `steps` steps; returns the clean estimate.

    The step index k goes to the network so that a streaming caller can keep one feature cache per step.
    """
    idx = sampling_indices(num_timesteps, steps)
    for k in range(steps - 1, -1, -1):
        x = ddim_step(lambda x_t, tau, k=k: network(x_t, tau, k), x, idx[k], idx[k - 1] if k else None,
                      alphas_cumprod, num_timesteps)
        if callback is not None:
            callback(k, x)
    return x


def frame_noise(seed: int, first_frame: int, count: int, height: int, width: int,
                channels: int = 3) -> torch.Tensor:
    """Unit Gaussian noise (1, C, count, H, W); frame f depends only on (seed, f), so chunking cannot change it."""
    frames = []
    for f in range(first_frame, first_frame + count):
        digest = hashlib.blake2b(f"{seed}:{f}".encode(), digest_size=8).digest()
        g = torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
        frames.append(torch.randn(channels, height, width, generator=g))
    return torch.stack(frames, dim=1).unsqueeze(0)
