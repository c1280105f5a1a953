"""Model configurations: one frozen dataclass per model and the registry of named presets."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class CDTConfig:
    """Every hyper-parameter of a CDT tokenizer; the official values unless noted (arXiv 2503.03708)."""

    context_dim: int = 64  # width d of the context encoder/decoder (stages use d * context_mults)
    context_mults: tuple[int, ...] = (1, 2, 3, 4)  # 4 stages; official value, fixed by the topology
    unet_dim: int = 64  # width u of the denoiser U-Net
    unet_mults: tuple[int, ...] = (1, 2, 3, 4, 5, 6)  # 6 levels; official value
    space_down: tuple[int, ...] = (1, 1, 1, 0)  # which encoder stages halve H and W (3 of 4: /8)
    time_down: tuple[int, ...] = (0, 0, 1, 1)  # which encoder stages halve T (2 of 4: /4)
    latent_dim: int = 16  # latent channels
    out_channels: int = 3  # channels of the finest context map (3 in small, 16 in base)
    new_upsample: bool = False  # True: zero padding + nearest/conv upsampler (base); False: replicate + ConvTranspose
    num_timesteps: int = 8192  # diffusion steps N of the cosine schedule
    condition_times: int = 4  # U-Net levels that receive a context map
    sample_steps: int = 1  # DDIM steps at decode (the paper decodes in one step)
    noise_scale: float = 0.8  # std of the initial decode noise (official sample_gamma)

    @property
    def pad_mode(self) -> str:
        """Padding mode of every causal conv: the official code ties it to the upsampler variant."""
        return "constant" if self.new_upsample else "replicate"

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent pixel along each side (8): the one home of the geometry timeline.py reads."""
        return 2 ** sum(self.space_down)

    @property
    def temporal_factor(self) -> int:
        """Video frames per latent frame after the first (4)."""
        return 2 ** sum(self.time_down)

    def validate(self) -> None:
        if len(self.context_mults) != 4 or len(self.space_down) != 4 or len(self.time_down) != 4:
            raise ValueError("context_mults, space_down and time_down need 4 entries (one per stage)")
        if len(self.unet_mults) != 6:
            raise ValueError("unet_mults needs 6 entries (one per U-Net level)")
        if not 0 <= self.condition_times <= 4:
            raise ValueError("condition_times must be in 0..4")
        if self.temporal_factor != 4 or self.spatial_factor != 8:
            raise ValueError("the codec assumes /8 in space and /4 in time")


DEFAULT_MODEL = "cdt-tiny"  # the preset whose weights ship with the package

_SMALL = CDTConfig()

PRESETS: dict[str, CDTConfig] = {
    # Official CDT-B: 192,592,755 parameters.
    "cdt-base": CDTConfig(
        context_dim=128, space_down=(0, 1, 1, 1), out_channels=16, new_upsample=True
    ),
    # Official CDT-S: 120,672,838 parameters.
    "cdt-small": _SMALL,
    # Our CPU default: CDT-S topology at width 16 (7.6 M parameters), the width the CPU
    # training probes and speed measurements were made at.
    "cdt-tiny": replace(_SMALL, context_dim=16, unet_dim=16),
}


def get_config(name: str) -> CDTConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}") from None
