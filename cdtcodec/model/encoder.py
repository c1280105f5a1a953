"""Causal 3D conv encoder: video -> diagonal Gaussian posterior over a 16-channel latent (/8 space, /4 time)."""

from __future__ import annotations

import torch
from torch import nn

from cdtcodec.config import CDTConfig
from cdtcodec.model.layers import Cache, CausalConv3d, Downsample, ResnetBlock, TimeDownsample


class EncoderStage(nn.Module):
    def __init__(self, cin: int, cout: int, space_down: bool, time_down: bool, large: bool, pad_mode: str):
        super().__init__()
        self.res = ResnetBlock(cin, cout, pad_mode, large=large)
        self.down = Downsample(cout, pad_mode) if space_down else None
        self.time_down = TimeDownsample(cout, pad_mode) if time_down else None

    def forward(self, x: torch.Tensor, cache: Cache | None) -> torch.Tensor:
        x = self.res(x, cache=cache)
        if self.down is not None:
            x = self.down(x)
        if self.time_down is not None:
            x = self.time_down(x, cache)
        return x


class Encoder(nn.Module):
    """(B, 3, T, H, W) video in [-1, 1] -> (B, 2L, T', H/8, W/8) raw posterior moments (mean, logvar)."""

    def __init__(self, cfg: CDTConfig):
        super().__init__()
        d, pad = cfg.context_dim, cfg.pad_mode
        widths = [d * m for m in cfg.context_mults]
        ins = [3] + widths[:-1]
        self.stages = nn.ModuleList(
            EncoderStage(ins[i], widths[i], bool(cfg.space_down[i]), bool(cfg.time_down[i]), i == 0, pad)
            for i in range(4)
        )
        # Two heads on the deepest features, summed: a 1x1 conv and a narrowing residual path.
        self.quant_conv = CausalConv3d(widths[3], 2 * cfg.latent_dim, (1, 1, 1))
        self.quant_res = nn.ModuleList(
            ResnetBlock(a, b, pad) for a, b in zip(widths[:0:-1], widths[-2::-1])
        )
        self.quant_res_out = CausalConv3d(widths[0], 2 * cfg.latent_dim, (1, 1, 1))

    def forward(self, video: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        h = video
        for stage in self.stages:
            h = stage(h, cache)
        r = h
        for block in self.quant_res:
            r = block(r, cache=cache)
        return self.quant_res_out(r) + self.quant_conv(h)


def split_moments(moments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw moments -> (mean, logvar clamped to [-30, 20])."""
    mean, logvar = moments.chunk(2, dim=1)
    return mean, logvar.clamp(-30.0, 20.0)
