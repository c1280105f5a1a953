"""Which entropy coder a file is written with, and the prior weights that go with a model.

    auto    the default: `prior` (format version 2) when the model has prior weights beside it
            (`<stem>.prior.safetensors` next to `<stem>.safetensors`), they fit its latents and the step is in
            the prior's range; otherwise `range` (format version 1), with a one-line note saying why.
            On the validation clips the prior gives 40-47% fewer real bytes than `range` at every quality
            (docs/bench/prior_bits.txt), so the rule picks the coder with fewer bytes without a second pass.
    prior   the prior, or an error saying why it cannot be used
    range   version-1 per-channel range coder;  zstd: version-1 zigzag + zstd

The prior's SHA-256 goes into the header's ENTROPY parameters, so the header's checksum covers it; a decoder
finds the prior beside the weights it decodes with and refuses one with another hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bitstream import Header
from bitstream.prior import PriorWeights, load_prior
from bitstream.prior_tables import STEP_BITS, STEP_Q_MAX, STEP_Q_MIN
from bitstream.spec import PRIOR_MAX_LATENT_PIXELS
from cdtcodec.errors import ParamError

ENTROPY_DEFAULT = "auto"
ENTROPY_CHOICES = ("auto", "prior", "range", "zstd")
PRIOR_SUFFIX = ".prior.safetensors"


class EntropyChoiceError(ValueError):
    """The requested coder cannot be used; the message is one line."""


class BadEntropy(ParamError, EntropyChoiceError):
    """The `entropy` argument cannot be honoured; the message names it (the command line says --entropy)."""


@dataclass(frozen=True)
class EntropyPlan:
    coder: str
    params: dict = field(default_factory=dict)
    prior: PriorWeights | None = None
    note: str = ""  # why `auto` fell back to range ("" when it did not)


def prior_path(weights: str | Path) -> Path:
    """Where a model's prior weights live: beside the weights file, same stem."""
    weights = Path(weights)
    stem = weights.name.removesuffix(".safetensors") if weights.name.endswith(".safetensors") else weights.stem
    return weights.with_name(stem + PRIOR_SUFFIX)


def step_in_prior_range(step: float) -> bool:
    return STEP_Q_MIN <= round(float(step) * (1 << STEP_BITS)) <= STEP_Q_MAX


def plan_encode(entropy: str, weights: str | Path, steps: tuple[float, ...], channels: int,
                latent_pixels: int = 0) -> EntropyPlan:
    """The coder for an encode with these weights, quantizer step(s) (one, or one per channel: format 2 layout 2),
    latent channels and latent positions per frame."""
    if entropy not in ENTROPY_CHOICES:
        raise BadEntropy("entropy", f" must be one of {', '.join(ENTROPY_CHOICES)}, got {entropy!r}")
    if entropy in ("range", "zstd"):
        return EntropyPlan(entropy)
    path = prior_path(weights)
    prior = None
    if not path.is_file():
        reason = f"the model {Path(weights).name} has no prior weights ({path.name})"
    elif len(steps) not in (1, channels):
        reason = f"{len(steps)} quantizer steps for {channels} latent channels"
    elif latent_pixels > PRIOR_MAX_LATENT_PIXELS:
        reason = f"frames of {latent_pixels} latent positions exceed the prior's {PRIOR_MAX_LATENT_PIXELS}"
    elif not all(step_in_prior_range(s) for s in steps):
        bad = next(s for s in steps if not step_in_prior_range(s))
        reason = f"step {bad} is outside the prior's range 2^-12 .. 2^12"
    else:
        prior = load_prior(path)
        reason = "" if prior.arch.channels == channels else (
            f"the prior {path.name} is for {prior.arch.channels} latent channels, the model has {channels}")
    if reason:
        if entropy == "prior":
            raise BadEntropy("entropy", f" prior: {reason}")
        return EntropyPlan("range", note=f"entropy range (format 1.0): {reason}")
    return EntropyPlan("prior", {"prior_sha256": prior.sha256}, prior)


def prior_for_decode(h: Header, weights: str | Path, label: str) -> PriorWeights | None:
    """The prior a file needs (None for version-1 coders), found beside the weights it is decoded with."""
    if h.entropy_coder != "prior":
        return None
    want = h.full_entropy_params()["prior_sha256"]
    path = prior_path(weights)
    if not path.is_file():
        raise EntropyChoiceError(f"{label} was coded with the prior sha256 {want}, but there is no {path.name} "
                                 f"beside {weights}")
    prior = load_prior(path)
    if prior.sha256 != want:
        raise EntropyChoiceError(f"{label} was coded with the prior sha256 {want}, but {path} has sha256 "
                                 f"{prior.sha256}; use the weights (and prior) it was encoded with")
    return prior
