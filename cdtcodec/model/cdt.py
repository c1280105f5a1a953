"""CDT: encoder -> latent -> context decoder -> conditional diffusion denoiser -> video (the sampler: sampling.py)."""

from __future__ import annotations

import torch
from torch import nn

from cdtcodec.config import CDTConfig
from cdtcodec.model.context import ContextDecoder
from cdtcodec.model.denoiser import Denoiser
from cdtcodec.model.encoder import Encoder, split_moments
from cdtcodec.model.layers import Cache
from cdtcodec.sampling import StepCallback, cosine_alphas_cumprod, sample


class CDT(nn.Module):
    """The tokenizer. Video tensors are (B, 3, T, H, W) in [-1, 1]; latents (B, 16, T', H/8, W/8).

    Construction gives PyTorch's default init, with the temporal resamplers as identity-like maps (the
    official constructor zeroes every causal conv, which only works when a checkpoint overwrites it).
    Every method takes optional caches (plain dicts owned by the caller): pass the same dict for
    consecutive chunks of one video, or nothing for a single full pass.
    """

    def __init__(self, cfg: CDTConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.context = ContextDecoder(cfg)
        self.denoiser = Denoiser(cfg)
        self.register_buffer("alphas_cumprod", cosine_alphas_cumprod(cfg.num_timesteps), persistent=False)
        # Channels-last conv weights match the activations' layout (see ChannelNorm), sparing oneDNN a reorder.
        self.to(memory_format=torch.channels_last_3d)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the networks run at (see set_precision)."""
        return self.encoder.quant_conv.weight.dtype

    def set_precision(self, dtype: torch.dtype) -> CDT:
        """Run the three networks in `dtype` (bfloat16: see cdtcodec/precision.py), their weights cast once.

        Activations then stay in that dtype from input to output (norms and softmaxes accumulate in fp32
        inside their kernels); the noise schedule and the sampler's state keep theirs, and moments() and
        decode() return the dtype they were given.
        """
        for net in (self.encoder, self.context, self.denoiser):
            net.to(dtype)
        return self

    def moments(self, video: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        """Raw posterior moments (B, 2L, T', h, w) in the video's dtype: mean then log-variance (unclamped)."""
        return _as(self.encoder(_as(video, self.dtype), cache), video.dtype)

    def encode(self, video: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        """Deterministic encode: the posterior mean."""
        return split_moments(self.moments(video, cache))[0]

    def decode(self, latent: torch.Tensor, noise_unit: torch.Tensor, steps: int | None = None,
               context_cache: Cache | None = None, step_caches: list[Cache] | None = None,
               callback: StepCallback | None = None) -> torch.Tensor:
        """Latent -> video by DDIM from noise_scale * noise_unit (unit Gaussian of the output's shape).

        Streaming keeps one context cache and one denoiser cache per sampling step, so a chunk can run all
        of its steps before the next chunk starts (the denoiser is causal, so this equals step-major order).
        """
        steps = steps or self.cfg.sample_steps
        dtype = self.dtype
        context = self.context(_as(latent, dtype), context_cache)

        def network(x_t: torch.Tensor, tau: torch.Tensor, k: int) -> torch.Tensor:
            cache = step_caches[k] if step_caches is not None else None
            return _as(self.denoiser(_as(x_t, dtype), _as(tau, dtype), context, cache), x_t.dtype)

        return sample(network, self.cfg.noise_scale * noise_unit, steps, self.alphas_cumprod,
                      self.cfg.num_timesteps, callback)


def _as(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x in `dtype`; untouched when it already is (so the ONNX tracer records no cast)."""
    return x if x.dtype == dtype else x.to(dtype)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

