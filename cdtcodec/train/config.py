"""The training run's settings, apart from torch, so that the command line can show them without loading it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LossWeights:
    kl: float = 1e-4  # on the per-element mean KL; small, as in the CPU probes (larger starves the latent)
    lpips: float = 0.1  # LPIPS-alex on the predicted x0, per frame
    inference_share: float = 0.5  # share of samples at the one-step decode point (t = N-1, noise * 0.8)
    # bits per pixel of the posterior mean under the model's conditional prior (frozen), at a quantizer step
    # drawn log-uniformly over the quality scale: rate-distortion fine-tuning; 0 leaves the rate out
    rate: float = 0.0
    # share of samples whose decoder input is the posterior mean rounded at that step (straight-through), as
    # the codec decodes, in place of the posterior sample; 0 trains on unquantized latents only
    quantized_share: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    model: str = "cdt-tiny"  # preset to train from scratch, or a weights file (ours or official) to fine-tune
    data: str = "data"  # built by scripts/build_dataset.py: data/train/*.mp4, data/val/*.mp4
    out: str = "runs/cdt-tiny"  # run directory; an existing checkpoint there is resumed
    steps: int = 20000  # total optimizer steps (a resumed run continues up to this)
    batch: int = 2  # clips per process per step
    frames: int = 9  # frames per clip (1 + 4k)
    crop: int = 64  # square crop size
    # share of samples per kind of footage (data/manifest.json); kinds not named are not drawn; none present:
    # every segment by its number of windows
    # text: the rendered credits, titles and subtitles, which natural footage never teaches; camera: what users
    # compress, 0.3 since it holds ~8,700 frames of 25 clips (a 0.25 share kept its first 2,500 from repeating)
    kind_mix: tuple[tuple[str, float], ...] = (("animation", 0.3), ("camera", 0.3), ("photo", 0.25),
                                               ("text", 0.1), ("screen", 0.05))
    lr: float = 3e-4  # peak AdamW learning rate
    warmup: int = 100  # linear warm-up steps
    final_lr_ratio: float = 0.1  # cosine decay ends at lr * this
    grad_clip: float = 1.0
    ema: float = 0.999  # EMA decay of the weights that get shipped
    kl_weight: float = LossWeights.kl
    lpips_weight: float = LossWeights.lpips
    inference_share: float = LossWeights.inference_share
    rate_weight: float = LossWeights.rate  # > 0 needs the prior beside the weights: <stem>.prior.safetensors
    quantized_share: float = LossWeights.quantized_share
    # the encoder (and so the latents, the prior's rates and the fitted quality scale) stays fixed: with
    # --quantized-share the decoder alone learns the quantized latents the codec sends
    freeze_encoder: bool = False
    seed: int = 0
    log_every: int = 10
    val_every: int = 250
    val_clips: int = 8  # shared evenly between the kinds of footage in the validation split
    val_size: int = 128
    val_frames: int = 9
    ckpt_every: int = 100
    workers: int = 1  # DataLoader worker processes per rank (video decoding overlaps the step)
    device: str = "auto"  # auto: cuda when available, else cpu
    threads: int = 0  # torch intra-op threads on CPU; 0 keeps torch's default
    precision: str = "fp32"  # auto, fp32 or bf16: the forward and backward under bfloat16 autocast, fp32 weights
