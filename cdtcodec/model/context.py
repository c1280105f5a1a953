"""Context decoder: latent -> four multi-scale conditioning maps for the denoiser, finest first."""

from __future__ import annotations

import torch
from torch import nn

from cdtcodec.config import CDTConfig
from cdtcodec.model.layers import Cache, CausalConv3d, ResnetBlock, TimeUpsample, make_upsample


class ContextStage(nn.Module):
    def __init__(self, cin: int, cout: int, up: nn.Module | None, time_up: bool, pad_mode: str):
        super().__init__()
        self.res = ResnetBlock(cin, cout, pad_mode)
        self.up = up
        self.time_up = TimeUpsample(cout) if time_up else None

    def forward(self, x: torch.Tensor, cache: Cache | None) -> torch.Tensor:
        x = self.res(x, cache=cache)
        if isinstance(self.up, ResnetBlock):
            x = self.up(x, cache=cache)  # the mapping block is causal too (the official code forgets its cache)
        elif self.up is not None:
            x = self.up(x)
        if self.time_up is not None:
            x = self.time_up(x, cache)
        return x


class ContextDecoder(nn.Module):
    """(B, L, T', h, w) latent -> [c0, c1, c2, c3], c0 at full resolution with out_channels channels."""

    def __init__(self, cfg: CDTConfig):
        super().__init__()
        d, pad = cfg.context_dim, cfg.pad_mode
        widths = [d * m for m in cfg.context_mults]  # d, 2d, 3d, 4d
        self.post_quant_conv = CausalConv3d(cfg.latent_dim, widths[3], (1, 1, 1))
        self.post_quant_in = CausalConv3d(cfg.latent_dim, widths[0], (1, 1, 1))
        self.post_quant_res = nn.ModuleList(ResnetBlock(a, b, pad) for a, b in zip(widths[:-1], widths[1:]))
        space_up = cfg.space_down[::-1]
        time_up = cfg.time_down[::-1]
        stage_out = [widths[2], widths[1], widths[0], widths[0]]
        stage_in = [widths[3]] + stage_out[:-1]
        stages = []
        for j in range(4):
            cout = stage_out[j]
            if j == 3:
                # The last stage maps to out_channels, by upsampling or with a "mapping" ResnetBlock.
                up = (make_upsample(cout, cfg.out_channels, cfg.new_upsample, pad) if space_up[j]
                      else ResnetBlock(cout, cfg.out_channels, pad))
            else:
                up = make_upsample(cout, cout, cfg.new_upsample, pad) if space_up[j] else None
            stages.append(ContextStage(stage_in[j], cout, up, bool(time_up[j]), pad))
        self.stages = nn.ModuleList(stages)

    def forward(self, z: torch.Tensor, cache: Cache | None = None) -> list[torch.Tensor]:
        q = self.post_quant_in(z)
        for block in self.post_quant_res:
            q = block(q, cache=cache)
        g = q + self.post_quant_conv(z)
        outs = []
        for stage in self.stages:
            g = stage(g, cache)
            outs.append(g)
        return outs[::-1]
