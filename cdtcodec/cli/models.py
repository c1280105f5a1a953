"""The commands that make weights: `cdtcodec convert` (an official checkpoint) and `cdtcodec train`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cdtcodec.cli.common import NO, PRECISION, THREADS, YES, err, fail, friendly_errors
from cdtcodec.cli.options import command
from cdtcodec.interrupts import Interrupted
from cdtcodec.overwrite import confirm_output, policy
from cdtcodec.train.config import TrainConfig


@command()
@friendly_errors
def convert(
    checkpoint: Path = typer.Argument(..., help="Official CDT checkpoint (.ckpt/.pt/.pth or .safetensors)."),
    output: Path = typer.Option(..., "-o", "--output", help="Our .safetensors file to write."),
    model_preset: Optional[str] = typer.Option(None, "--model-preset",
                                               help="The model topology: cdt-base or cdt-small (detected from the "
                                                    "shapes if omitted)."),
    half: bool = typer.Option(False, "--half", help="Store fp16 (the official evaluation ran through fp16 weights)."),
    yes: bool = YES,
    no: bool = NO,
):
    """Convert an official CDT-B / CDT-S checkpoint into a cdtcodec weights file."""
    new_only = confirm_output(output, policy(yes, no), [checkpoint])
    from bitstream.atomic import only_new
    from cdtcodec.config import get_config
    from cdtcodec.model import CDT
    from cdtcodec.weights import convert_official, save_model

    name, state = convert_official(checkpoint, model_preset)
    model = CDT(get_config(name))
    model.load_state_dict(state, strict=True)
    with only_new(*[output] if new_only else []):  # one written meanwhile by another run is kept
        save_model(model, output, name, half=half, extra={"source": checkpoint.name})
    err.print(f"converted {checkpoint} ({name}, {len(state)} tensors) -> {output}", markup=False)


_TRAIN = TrainConfig()  # the defaults live in TrainConfig; the options show them, never retype them


@command()
@friendly_errors
def train(
    model: str = typer.Option(_TRAIN.model, help="Preset to train from scratch, or weights to fine-tune from."),
    data: Path = typer.Option(Path(_TRAIN.data), help="Data set built by scripts/build_dataset.py."),
    output: Path = typer.Option(Path(_TRAIN.out), "-o", "--output",
                                help="Run directory; a checkpoint there is resumed."),
    steps: int = typer.Option(_TRAIN.steps, min=1, help="Training steps (optimizer updates) of the whole run."),
    batch: int = typer.Option(_TRAIN.batch, min=1, help="Clips per process per step."),
    clip_frames: int = typer.Option(_TRAIN.frames, "--clip-frames", min=1, help="Frames per clip (1 + 4k)."),
    crop: int = typer.Option(_TRAIN.crop, min=16, help="Square crop size (multiple of 16)."),
    lr: float = typer.Option(_TRAIN.lr, help="Peak learning rate (AdamW)."),
    warmup: int = typer.Option(_TRAIN.warmup, min=0, help="Linear warm-up steps up to --lr."),
    final_lr_ratio: float = typer.Option(_TRAIN.final_lr_ratio, min=0.0, max=1.0,
                                         help="The cosine decay ends at --lr times this, at --steps."),
    kl_weight: float = typer.Option(_TRAIN.kl_weight),
    lpips_weight: float = typer.Option(_TRAIN.lpips_weight),
    rate_weight: float = typer.Option(_TRAIN.rate_weight, min=0.0,
                                      help="Weight of the rate (bpp under the model's prior): rate-distortion."),
    quantized_share: float = typer.Option(_TRAIN.quantized_share, min=0.0, max=1.0,
                                          help="Share of samples decoded from the quantized latent, as the codec "
                                               "decodes (the step drawn over the quality scale); use with "
                                               "--rate-weight, which keeps the latents from growing."),
    freeze_encoder: bool = typer.Option(_TRAIN.freeze_encoder,
                                        help="Keep the encoder (and so the latents, the prior's rates and the quality "
                                             "scale) fixed; with --quantized-share the decoder alone learns the "
                                             "quantized latents."),
    inference_share: float = typer.Option(_TRAIN.inference_share, min=0.0, max=1.0,
                                          help="Share of samples at the one-step decode point."),
    ema: float = typer.Option(_TRAIN.ema),
    seed: int = typer.Option(_TRAIN.seed),
    val_every: int = typer.Option(_TRAIN.val_every, min=1),
    ckpt_every: int = typer.Option(_TRAIN.ckpt_every, min=1),
    workers: int = typer.Option(_TRAIN.workers, min=0),
    export: Optional[Path] = typer.Option(None, help="Write the EMA weights (fp16 safetensors) here at the end."),
    threads: int = THREADS,
    device: str = typer.Option(_TRAIN.device, help="cpu, cuda or auto."),
    precision: str = PRECISION,
    yes: bool = typer.Option(False, "-y", "--overwrite", help="Replace an existing --export file without asking."),
    no: bool = typer.Option(False, "-n", "--no-overwrite", help="Never replace an existing --export file."),
):
    """Train (or fine-tune) a model; run under torchrun for several processes (DDP)."""
    # checked now, not after hours of training
    new_only = export is not None and confirm_output(export, policy(yes, no), [model, output / "checkpoint.pt"])
    from bitstream.atomic import only_new
    from cdtcodec.timeline import CODEC_TIMELINE
    from cdtcodec.train.run import run_training

    if CODEC_TIMELINE.coded_frames(clip_frames) != clip_frames:
        raise ValueError(f"--clip-frames must be 1 + {CODEC_TIMELINE.temporal}k (e.g. 9, 17)")
    if crop % 16:
        raise ValueError("--crop must be a multiple of 16")
    cfg = TrainConfig(model=model, data=str(data), out=str(output), steps=steps, batch=batch, frames=clip_frames,
                      crop=crop, lr=lr, warmup=warmup, final_lr_ratio=final_lr_ratio, kl_weight=kl_weight,
                      lpips_weight=lpips_weight, rate_weight=rate_weight, quantized_share=quantized_share,
                      freeze_encoder=freeze_encoder, inference_share=inference_share,
                      ema=ema, seed=seed, val_every=val_every, ckpt_every=ckpt_every, workers=workers,
                      device=device, threads=threads, precision=precision)
    try:
        with only_new(*[export] if new_only else []):  # an --export written meanwhile by another run is kept
            run_training(cfg, export=export, console=err)
    except (Interrupted, KeyboardInterrupt) as e:  # the loop wrote its checkpoint on the way out
        name, code = (e.name, e.exit_code) if isinstance(e, Interrupted) else ("SIGINT", 130)
        fail(f"interrupted by {name}; the run so far is in {output / 'checkpoint.pt'} (the same command resumes "
             "it)", code)
