"""The training objective: x0-prediction diffusion MSE + KL on the posterior + LPIPS on the predicted video,
optionally the rate of the quantized posterior mean under the conditional prior, and optionally a share of
samples decoded from the quantized posterior mean, as the codec decodes."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cdtcodec.model import CDT
from cdtcodec.model.encoder import split_moments
from cdtcodec.rate.quantize import QUALITY_STEP_RANGE, QualityScale
from cdtcodec.sampling import q_sample
from cdtcodec.train.config import LossWeights  # noqa: F401 (re-exported: its old home)


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-element mean of KL(N(mean, exp(logvar)) || N(0, 1))."""
    return 0.5 * torch.mean(mean.pow(2) + logvar.exp() - 1.0 - logvar)


class Objective(nn.Module):
    """Wraps the model so one forward computes every loss (DistributedDataParallel needs the forward).

    Timesteps: a share `inference_share` of the batch trains exactly the decode used at inference
    (t = N-1 from 0.8-scaled noise); the rest is uniform over 0..N-1 with unit noise. The uniform part
    makes the denoiser use its inputs; the CPU probes show that training only at t = N-1 collapses the
    latent (KL -> 0), while the inference point must be trained directly because the one-step decode
    is all the codec ever runs.

    Quantizer steps: each sample draws one global step, log-uniform over `steps` (or over the quality scale's
    range), which both the rate term and the quantized decode use, so that the bits paid for and the latents
    decoded are those of the same step; with a quality scale that has gain vectors, the step of each channel is
    the global step times the gain the scale gives there (as the codec quantizes between its levels).

    freeze_encoder: the encoder runs without gradients and the KL term is left out, so the latents, and with them
    the prior's rates and the quality scale fitted on them, stay exactly as they are; the decoder then learns the
    quantized latents the codec sends (rate-distortion fine-tuning of the decoder alone).
    """

    def __init__(self, model: CDT, weights: LossWeights, lpips: nn.Module | None, prior: nn.Module | None = None,
                 steps: tuple[float, float] = QUALITY_STEP_RANGE, scale: QualityScale | None = None,
                 freeze_encoder: bool = False):
        """prior: the frozen torch twin of the model's conditional prior (rate.prior_twin.ConditionalPrior), needed
        when weights.rate > 0; steps: the range of quantizer steps the rate and the quantized decode are taken at."""
        super().__init__()
        if weights.rate > 0 and prior is None:
            raise ValueError("a rate weight needs the model's prior")
        self.model = model
        self.weights = weights
        self.lpips = lpips
        self.prior = prior.requires_grad_(False) if prior is not None else None
        self.steps = (scale.global_steps[-1], scale.global_steps[0]) if scale is not None else steps
        self.scale = scale
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            model.encoder.requires_grad_(False)

    def draw_steps(self, b: int, generator: torch.Generator) -> torch.Tensor:
        """(B, C) quantizer steps (C = 1 without gain vectors): a global step per sample, log-uniform."""
        lo, hi = (math.log(s) for s in self.steps)
        g = torch.exp(lo + (hi - lo) * torch.rand(b, generator=generator, dtype=torch.float64))
        if self.scale is None or self.scale.gains is None:
            return g.float().view(b, 1)
        return torch.tensor([[float(x) * v for v in self.scale.gains_at(float(x))] for x in g], dtype=torch.float32)

    def forward(self, video: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """video (B, 3, T, H, W) in [-1, 1], T = 1 + 4k. Returns the losses and a few diagnostics."""
        model, cfg = self.model, self.model.cfg
        b = video.shape[0]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            mean, logvar = split_moments(model.moments(video))
        eps_z = torch.randn(mean.shape, generator=generator).to(mean)
        z = mean + (0.5 * logvar).exp() * eps_z
        step = None
        if self.weights.rate > 0 or self.weights.quantized_share > 0:
            step = self.draw_steps(b, generator).to(mean).view(b, -1, 1, 1, 1)
        if self.weights.quantized_share > 0:
            # the codec decodes round(mean / step) * step: those samples see exactly that latent, with a
            # straight-through gradient to the encoder: rounding for the decoder, noise for the rate (the mixed
            # quantization of Minnen & Singh 2020), since rounding is what the decoder meets in the codec
            quantized = (torch.rand(b, generator=generator) < self.weights.quantized_share).to(mean.device)
            rounded = mean + (torch.round(mean / step) * step - mean).detach()
            z = torch.where(quantized.view(b, 1, 1, 1, 1), rounded, z)
        context = model.context(z)

        n = cfg.num_timesteps
        at_inference = torch.rand(b, generator=generator) < self.weights.inference_share
        t = torch.randint(0, n, (b,), generator=generator)
        t = torch.where(at_inference, torch.full_like(t, n - 1), t)
        noise = torch.randn(video.shape, generator=generator).to(video)
        scale = torch.where(at_inference, cfg.noise_scale, 1.0).to(video).view(b, 1, 1, 1, 1)
        x_t = q_sample(video, t.to(video.device), noise * scale, model.alphas_cumprod)
        tau = (t.to(video) / n).view(b, 1)
        x0 = model.denoiser(x_t, tau, context)

        mse = F.mse_loss(x0, video)
        kl = kl_to_standard_normal(mean, logvar)
        loss = mse if self.freeze_encoder else mse + self.weights.kl * kl
        out = {"mse": mse.detach(), "kl": kl.detach(), "latent_std": mean.detach().std()}
        if self.lpips is not None and self.weights.lpips > 0:
            def frames(v):
                return v.transpose(1, 2).flatten(0, 1)  # (B, 3, T, H, W) -> (B*T, 3, H, W)
            perceptual = self.lpips(frames(x0), frames(video)).mean()
            loss = loss + self.weights.lpips * perceptual
            out["lpips"] = perceptual.detach()
        if self.prior is not None and self.weights.rate > 0:
            from cdtcodec.rate.prior_twin import rate_bits

            pixels = b * video.shape[2] * video.shape[3] * video.shape[4]
            bpp = rate_bits(self.prior, mean, step.view(b, -1).expand(b, mean.shape[1])) / pixels
            loss = loss + self.weights.rate * bpp
            out["bpp"] = bpp.detach()
        out["loss"] = loss
        return out
