"""Latents <-> integer symbols: the one home of step sizes and of the quality scale.

Uniform scalar quantization, symbols = round(z / step), with one step per file or one per latent channel (stored
in the header's QUANT field either way). A larger step means fewer bits and more distortion. A decoder reads the
steps from the header, so the scale below can change without touching a single file already written.

A quality level is a global step times a per-channel gain vector (Cui et al., "Asymmetric Gained Deep Image
Compression with Continuous Rate Adaptation", CVPR 2021): the latent channels are nothing alike (on cdt-tiny v6,
zeroing channel 2 costs 5.7 dB, channel 0 nothing), so one step for all of them spends bits on the channels that
do not matter and zeroes the ones that do at the coarse levels. Gains are normalised to a geometric mean of 1, so
the global step is the steps' geometric mean (the prior's conditioning input, bitstream/prior.py).

Where the numbers live:
  * DEFAULT_SCALE: one octave of step per level, 8 (quality 1) .. 1/16 (quality 8), all gains 1. Models without
    a fitted scale use it (and it is what every file before per-channel steps was written with).
  * `<stem>.quality.safetensors` beside a model's weights (like its prior, `<stem>.prior.safetensors`): the
    scale fitted for exactly those weights by scripts/fit_gains.py (global step and gain vector per level,
    chosen by rate-distortion measurement). It sits beside the weights, not here, because gains belong to one set
    of weights (a retrained model orders its channels differently), so the file names the SHA-256 of the weights
    it was fitted on and travels with them; safetensors because the package already installs every
    `*.safetensors` of the weights folder and it holds float64 arrays exactly, without pickle.
Rate control (control.py) moves the global step continuously, the gain vector interpolated between the
levels' (as Cui et al. interpolate between gain vectors).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

# quality 1 (smallest files) .. 8 (best quality); steps in latent units (latent std is about 2 to 4).
QUALITY_STEPS: dict[int, float] = {q: 2.0 ** (4 - q) for q in range(1, 9)}
# the steps the scale spans: the prior is trained (and the training's rate term taken) over this range
QUALITY_STEP_RANGE = (min(QUALITY_STEPS.values()), max(QUALITY_STEPS.values()))
DEFAULT_QUALITY = 5
QUALITIES = tuple(sorted(QUALITY_STEPS))
# Below this the symbols of ordinary latents (|z| up to ~100) leave the 32-bit range the format holds
# (1e-30 once wrapped around silently); quantize() also checks each chunk, whatever the step.
MIN_STEP = 1e-6
SYMBOL_LIMIT = 2**31 - 1
SCALE_SUFFIX = ".quality.safetensors"
SCALE_FORMAT = "cdtcodec-quality-scale"
GAIN_RANGE = (1 / 64, 64)  # a gain outside this is a fitting accident, not a choice


class QualityScaleError(ValueError):
    """A quality-scale file that cannot be used; the message is one line."""


def step_for_quality(quality: int) -> float:
    """The default scale's global step of `quality` (all gains 1)."""
    if quality not in QUALITY_STEPS:
        raise ValueError(f"quality must be in {min(QUALITY_STEPS)}..{max(QUALITY_STEPS)}")
    return QUALITY_STEPS[quality]


@dataclass(frozen=True)
class QualityScale:
    """Per quality level (1..8): a global step and a gain vector (None: all gains 1, one step per file).
    `steps(q)` are the quantizer steps a file at that level carries."""

    global_steps: tuple[float, ...]  # level 1 .. 8, decreasing
    gains: tuple[tuple[float, ...], ...] | None = None  # level 1 .. 8, each C gains, geometric mean 1
    weights_sha256: str = ""  # the weights the gains were fitted on ("" for the default scale)
    source: str = "default"

    def __post_init__(self):
        if len(self.global_steps) != len(QUALITIES) or not all(
                math.isfinite(s) and s >= MIN_STEP for s in self.global_steps):
            raise QualityScaleError(f"quality scale: {len(QUALITIES)} finite steps >= {MIN_STEP:g} expected")
        if any(a <= b for a, b in zip(self.global_steps, self.global_steps[1:])):
            raise QualityScaleError("quality scale: the steps must fall from quality 1 to 8")
        if self.gains is not None:
            if len(self.gains) != len(QUALITIES) or len({len(g) for g in self.gains}) != 1:
                raise QualityScaleError(f"quality scale: {len(QUALITIES)} gain vectors of one length expected")
            for q, g in zip(QUALITIES, self.gains):
                if not all(math.isfinite(v) and GAIN_RANGE[0] <= v <= GAIN_RANGE[1] for v in g):
                    raise QualityScaleError(f"quality scale: quality {q} has a gain outside {GAIN_RANGE}")
                if abs(float(np.mean(np.log(g)))) > 1e-6:
                    raise QualityScaleError(f"quality scale: quality {q}'s gains do not have geometric mean 1")

    @property
    def channels(self) -> int | None:
        return None if self.gains is None else len(self.gains[0])

    def global_step(self, quality: int) -> float:
        if quality not in QUALITIES:
            raise ValueError(f"quality must be in {QUALITIES[0]}..{QUALITIES[-1]}")
        return self.global_steps[quality - 1]

    def gains_at(self, global_step: float) -> tuple[float, ...] | None:
        """The gain vector at any global step: the levels' vectors interpolated in log space along log(step)
        (Cui et al.'s continuous rate adaptation), the end levels' beyond the scale; None when all gains are 1."""
        if self.gains is None:
            return None
        x = math.log(global_step)
        xs = [math.log(s) for s in self.global_steps]  # decreasing
        if x >= xs[0]:
            return self.gains[0]
        if x <= xs[-1]:
            return self.gains[-1]
        i = next(i for i in range(len(xs) - 1) if xs[i] >= x >= xs[i + 1])
        t = (xs[i] - x) / (xs[i] - xs[i + 1])
        logs = (1 - t) * np.log(self.gains[i]) + t * np.log(self.gains[i + 1])
        logs -= logs.mean()  # keep the geometric mean at exactly 1 (up to rounding)
        return tuple(float(v) for v in np.exp(logs))

    def steps_at(self, global_step: float) -> tuple[float, ...]:
        """The header's quantizer steps at a global step: (step,) or one per channel."""
        g = self.gains_at(global_step)
        return _steps(float(global_step), g)

    def steps(self, quality: int) -> tuple[float, ...]:
        """The quantizer steps of a quality level: exactly global step x that level's gains."""
        return _steps(self.global_step(quality), None if self.gains is None else self.gains[quality - 1])

    def gain_spread(self) -> tuple[float, float]:
        """The smallest and the largest gain of any level (1, 1 without gains): rate control's step bounds."""
        if self.gains is None:
            return 1.0, 1.0
        return min(min(g) for g in self.gains), max(max(g) for g in self.gains)


def _steps(step: float, gains) -> tuple[float, ...]:
    """One step when every gain is 1 (a level fitted without gains): such a file is written as before per-channel
    steps existed (with the prior, layout 1), so every earlier reader decodes it."""
    if gains is None or all(v == 1.0 for v in gains):
        return (step,)
    return tuple(step * v for v in gains)


DEFAULT_SCALE = QualityScale(tuple(QUALITY_STEPS[q] for q in QUALITIES))


def scale_path(weights: str | Path) -> Path:
    """Where a model's fitted quality scale lives: beside the weights file, same stem."""
    weights = Path(weights)
    stem = weights.name.removesuffix(".safetensors") if weights.name.endswith(".safetensors") else weights.stem
    return weights.with_name(stem + SCALE_SUFFIX)


def save_scale(scale: QualityScale, path: str | Path, note: dict | None = None) -> None:
    """Write a quality-scale file: tensors `steps` (8,) and `gains` (8, C) float64, metadata format, the weights'
    SHA-256 and `note` (JSON: how it was fitted)."""
    from safetensors.numpy import save_file

    if scale.gains is None:
        raise QualityScaleError("quality scale: a file holds gains; the default scale needs none")
    tensors = {"steps": np.array(scale.global_steps, dtype=np.float64),
               "gains": np.array(scale.gains, dtype=np.float64)}
    meta = {"format": SCALE_FORMAT, "weights_sha256": scale.weights_sha256, "note": json.dumps(note or {})}
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def load_scale(path: str | Path) -> QualityScale:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            if meta.get("format") != SCALE_FORMAT:
                raise QualityScaleError(f"{path}: not a cdtcodec quality scale")
            steps, gains = f.get_tensor("steps"), f.get_tensor("gains")
    except (SafetensorError, OSError, KeyError) as e:
        raise QualityScaleError(f"{path}: unreadable quality scale ({e})") from None
    if steps.shape != (len(QUALITIES),) or gains.ndim != 2 or gains.shape[0] != len(QUALITIES):
        raise QualityScaleError(f"{path}: steps {steps.shape} / gains {gains.shape}, expected (8,) / (8, C)")
    return QualityScale(tuple(float(v) for v in steps), tuple(tuple(float(v) for v in g) for g in gains),
                        meta.get("weights_sha256", ""), str(path))


def scale_for(weights: str | Path | None, weights_sha256: str, channels: int) -> tuple[QualityScale, str]:
    """(the quality scale for these weights, a note: "" or one line saying why the default is used instead).

    The fitted file beside the weights when there is one for these very weights (SHA-256) and channel count."""
    if weights is None:
        return DEFAULT_SCALE, ""
    path = scale_path(weights)
    if not path.is_file():
        return DEFAULT_SCALE, ""
    scale = load_scale(path)
    if scale.weights_sha256 and scale.weights_sha256 != weights_sha256:
        return DEFAULT_SCALE, (f"quality scale {path.name} was fitted for other weights (sha256 "
                               f"{scale.weights_sha256[:12]}..); using the default scale (one step for all channels)")
    if scale.channels != channels:
        return DEFAULT_SCALE, (f"quality scale {path.name} has {scale.channels} gains, the model {channels} latent "
                               f"channels; using the default scale")
    return scale, ""


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# torch is imported where it is used, so the quality scale is readable without loading it (the CLI's options)

def _per_channel(step, channels: int, like):
    """A number, or one step per channel -> something that broadcasts over (C, t, h, w)."""
    import torch

    if isinstance(step, (int, float)):
        return float(step)
    steps = [float(s) for s in step]
    if len(steps) == 1:
        return steps[0]
    if len(steps) != channels:
        raise ValueError(f"{len(steps)} quantizer steps for {channels} latent channels (1 or {channels})")
    return torch.tensor(steps, dtype=torch.float32, device=getattr(like, "device", None)).view(-1, 1, 1, 1)


def _check_steps(step) -> None:
    steps = [step] if isinstance(step, (int, float)) else list(step)
    if not steps or not all(isinstance(s, (int, float)) and math.isfinite(s) and s > 0 for s in steps):
        raise ValueError("quantizer step must be > 0")


def quantize(latent, step: float | Sequence[float]) -> np.ndarray:
    """(C, t, h, w) float torch latent -> int32 symbols; `step` one number or one per channel."""
    import torch

    _check_steps(step)
    q = torch.round(latent.float() / _per_channel(step, latent.shape[0], latent))
    if q.numel() and not (torch.isfinite(q).all() and q.abs().max() <= SYMBOL_LIMIT):
        shown = f"{step:g}" if isinstance(step, (int, float)) else f"{min(step):g}"
        raise ValueError(f"quantizer step {shown} is too small for these latents: symbols beyond 32 bits")
    return q.to(torch.int32).cpu().numpy()


def dequantize(symbols: np.ndarray, step: float | Sequence[float]):
    """int32 symbols (C, t, h, w) -> float32 torch latent; `step` one number or one per channel."""
    import torch

    x = torch.from_numpy(symbols.astype(np.float32))
    return x * _per_channel(step, x.shape[0], x)


def roundtrip(latent, step: float | Sequence[float]):
    """(C, t, h, w) torch latent -> the latent a decoder gets from its symbols, on the latent's device and dtype."""
    return dequantize(quantize(latent, step), step).to(latent)
