"""The diffusion process: cosine schedule, x0-prediction DDIM sampling. No parameters, no state."""

from __future__ import annotations

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
