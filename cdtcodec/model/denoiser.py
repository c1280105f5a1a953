"""Conditional causal 3D U-Net: (noisy video, time, context maps) -> predicted clean video x0."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cdtcodec.config import CDTConfig
from cdtcodec.model.layers import (
    AttentionBlock,
    Cache,
    CausalConv3d,
    ChannelNorm,
    Downsample,
    ResnetBlock,
    TimeDownsample,
    TimeUpsample,
    make_upsample,
)


class UNetLevel(nn.Module):
    """Two time-conditioned ResnetBlocks and attention, then optional space/time resampling."""

    def __init__(self, cin: int, cout: int, time_dim: int, large: bool, space: nn.Module | None,
                 time: nn.Module | None, pad_mode: str):
        super().__init__()
        self.res1 = ResnetBlock(cin, cout, pad_mode, time_dim, large)
        self.res2 = ResnetBlock(cout, cout, pad_mode, time_dim)
        self.attn = AttentionBlock(cout)
        self.space = space
        self.time = time

    def blocks(self, x: torch.Tensor, temb: torch.Tensor, cache: Cache | None) -> torch.Tensor:
        x = self.res1(x, temb, cache)
        x = self.res2(x, temb, cache)
        return self.attn(x)

    def resample(self, x: torch.Tensor, cache: Cache | None) -> torch.Tensor:
        if self.space is not None:
            x = self.space(x)
        if self.time is not None:
            x = self.time(x, cache)
        return x


class Denoiser(nn.Module):
    """x (B, 3, T, H, W), tau (B, 1) = step / N, context maps -> x0 prediction (B, 3, T, H, W)."""

    def __init__(self, cfg: CDTConfig):
        super().__init__()
        u, d, pad = cfg.unet_dim, cfg.context_dim, cfg.pad_mode
        self.condition_times = cfg.condition_times
        widths = [u * m for m in cfg.unet_mults]
        space_down = tuple(cfg.space_down) + (1, 0)
        time_down = tuple(cfg.time_down) + (0, 0)
        context_ch = [cfg.out_channels] + [d * m for m in cfg.context_mults[:3]]
        self.time_mlp = nn.Sequential(nn.Linear(1, 4 * u), nn.GELU(), nn.Linear(4 * u, u))

        downs, cin = [], 3
        for i, w in enumerate(widths):
            if i < cfg.condition_times:
                cin += context_ch[i]
            space = Downsample(w, pad) if space_down[i] else None
            time = TimeDownsample(w, pad) if time_down[i] else None
            downs.append(UNetLevel(cin, w, u, i == 0, space, time, pad))
            cin = w
        self.downs = nn.ModuleList(downs)

        self.mid_block1 = ResnetBlock(widths[-1], widths[-1], pad, u)
        self.mid_attn = AttentionBlock(widths[-1])
        self.mid_block2 = ResnetBlock(widths[-1], widths[-1], pad, u)

        ups = []
        for j in range(5):
            skip_w, out_w = widths[5 - j], widths[4 - j]
            space = make_upsample(out_w, out_w, cfg.new_upsample, pad) if space_down[4 - j] else None
            time = TimeUpsample(out_w) if time_down[4 - j] else None
            ups.append(UNetLevel(cin + skip_w, out_w, u, False, space, time, pad))
            cin = out_w
        self.ups = nn.ModuleList(ups)

        self.final_norm = ChannelNorm(u)
        self.final_conv = CausalConv3d(u, 3, (3, 7, 7), pad_mode=pad)

    def forward(self, x: torch.Tensor, tau: torch.Tensor, context: list[torch.Tensor],
                cache: Cache | None = None) -> torch.Tensor:
        temb = self.time_mlp(tau)
        skips = []
        for i, level in enumerate(self.downs):
            if i < self.condition_times:
                x = torch.cat([x, context[i]], dim=1)
            x = level.blocks(x, temb, cache)
            skips.append(x)
            x = level.resample(x, cache)

        x = self.mid_block1(x, temb, cache)
        x = self.mid_attn(x)
        x = self.mid_block2(x, temb, cache)

        for j, level in enumerate(self.ups):
            skip = skips[5 - j]  # skips[0] is never used, as in the official network
            if x.shape[2:] != skip.shape[2:]:
                # Only for odd latent sizes: legacy 'nearest' resize, as the official network does.
                x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
            x = level.blocks(torch.cat([x, skip], dim=1), temb, cache)
            x = level.resample(x, cache)

        return self.final_conv(self.final_norm(x), cache)
