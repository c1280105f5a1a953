"""`cdtcodec encode`: one video into a .cdt file (here), or a corpus into a folder (cli/corpus.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import typer

from bitstream.spec import MAX_SAMPLING_STEPS
from cdtcodec.cli.common import (
    AS_JSON,
    DEVICE,
    MAX_MEMORY,
    MAX_THREADS,
    NO,
    PRECISION,
    QUIET,
    YES,
    device_named,
    err,
    fail,
    friendly_errors,
    input_path,
    memory,
    output_path,
    precision_for,
    progress_bar,
    set_threads,
    summary,
    warn,
)
from cdtcodec.cli.corpus import corpus_reason, encode_corpus
from cdtcodec.cli.options import command, options_command
from cdtcodec.config import DEFAULT_MODEL
from cdtcodec.corpus import DEFAULT_SHARD_SIZE
from cdtcodec.overwrite import confirm_output, policy
from cdtcodec.rate.coder_choice import ENTROPY_CHOICES, ENTROPY_DEFAULT
from cdtcodec.rate.quantize import DEFAULT_QUALITY, QUALITY_STEPS


@dataclass(frozen=True)
class EncodeOptions:
    """encode's arguments and options, declared once: each field's default is its typer declaration, the
    command's parameters are these fields (options_command), and the command passes the one object on."""

    inputs: list[str] = typer.Argument(..., metavar="INPUT",
                                       help="Video or still image (any format PyAV reads), or - for stdin. Several "
                                            "inputs, folders (their videos, recursively) or @list.txt manifests "
                                            "(one path a line) make a corpus, written into -o DIR/.")
    output: str = typer.Option(..., "-o", "--output", help=".cdt file to write, - for stdout, or DIR/ for a corpus.")
    quality: Optional[int] = typer.Option(None, "--quality", "-q", min=min(QUALITY_STEPS), max=max(QUALITY_STEPS),
                                          help=f"1 (smallest) .. {max(QUALITY_STEPS)} (best), default "
                                               f"{DEFAULT_QUALITY}; "
                                               "a level of the weights' quality scale: a quantizer step, with "
                                               "per-channel gains where the scale has them (docs/rate.md).")
    qstep: Optional[float] = typer.Option(None, "--qstep", help="Quantizer step size (overrides --quality).")
    target_kbps: Optional[float] = typer.Option(None, "--target-kbps", help="Rate control: search the step so that "
                                                "the whole file (audio included) lands within 2% of this many kbps; "
                                                "instead of --quality / --qstep.")
    target_bpp: Optional[float] = typer.Option(None, "--target-bpp", help="Rate control, the target in bits per "
                                               "pixel (file bits / (frames x width x height)).")
    model: str = typer.Option(DEFAULT_MODEL, help="Preset with shipped weights, or a weights file.")
    seed: int = typer.Option(0, min=0, max=2**64 - 1, help="Decoder noise seed, stored in the file.")
    sampling_steps: int = typer.Option(1, "--sampling-steps", min=1, max=MAX_SAMPLING_STEPS,
                                       help="DDIM sampling steps used at decode, stored in the file.")
    entropy: str = typer.Option(ENTROPY_DEFAULT, help=f"Entropy coder: {', '.join(ENTROPY_CHOICES)} (auto: the "
                                                      "model's prior, format 2, if it has one; else range, format 1).")
    start: float = typer.Option(0.0, min=0.0, help="Start time in seconds.")
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1,
                                             help="Encode at most this many frames (of each input), from --start.")
    no_audio: bool = typer.Option(False, "--no-audio", help="Do not carry the source audio.")
    threads: int = typer.Option(0, min=0, max=MAX_THREADS,
                                help="CPU threads for the model (0: torch's default, one per core); a corpus "
                                     "splits them between its --jobs; with --ray, each actor's.")
    device: str = DEVICE
    precision: str = PRECISION
    as_json: bool = AS_JSON
    quiet: bool = QUIET
    max_memory: Optional[str] = MAX_MEMORY
    yes: bool = YES
    no: bool = NO
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1,
                                       help="Corpus: worker processes, each loading the model once (default 1); "
                                            "with --ray, actors (default: as many as the cluster holds).")
    ray: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS|local",
                                      help="Corpus on Ray: local starts Ray on this machine, else a cluster "
                                           "address (auto, ray://HEAD:10001). Needs pip install 'cdtcodec[ray]'.")
    latents: bool = typer.Option(False, "--latents",
                                 help="Corpus: WebDataset tar shards of the posterior means with per-clip metadata "
                                      "(training latents) instead of .cdt files.")
    latent_dtype: str = typer.Option("float16", "--latent-dtype", help="Latents' dtype: float16 or bfloat16.")
    shard_size: int = typer.Option(DEFAULT_SHARD_SIZE, "--shard-size", min=1, help="Clips per latent shard.")
    summary: Optional[str] = typer.Option(None, "--summary", metavar="PATH",
                                          help="Corpus: the JSONL summary, one line per clip "
                                               "(default DIR/summary.jsonl).")


@command()
@friendly_errors
@options_command(EncodeOptions)
def encode(o: EncodeOptions) -> None:
    """Encode a video into a .cdt file, or a corpus into a folder of .cdt files or latent shards."""
    if corpus_reason(o):
        encode_corpus(o)
        return
    from cdtcodec import codec

    input = o.inputs[0]
    target = rate_target(o)
    new_only = confirm_output(o.output, policy(o.yes, o.no), [input])
    set_threads(o.threads)
    device = device_named(o.device)
    precision = precision_for(o.precision, device)
    with input_path(input, ".video") as src, output_path(o.output, ".cdt", new_only) as dst, \
            progress_bar(not (o.quiet or o.as_json), "encode") as progress:
        report = codec.encode(src, dst, model=o.model, quality=o.quality, step=o.qstep, target=target, seed=o.seed,
                              steps=o.sampling_steps, entropy=o.entropy, start_s=o.start, max_frames=o.max_frames,
                              audio=not o.no_audio, device=device, precision=precision, progress=progress,
                              max_memory=memory(o.max_memory), notice=None if o.quiet else warn,
                              rate_progress=None if (o.quiet or o.as_json) else _rate_trial(target))
    summary("encode", report, o.output, o.as_json, o.quiet)


def rate_target(o: EncodeOptions):
    """The rate target the options ask for (None: a quality or a step); combinations that mean two are refused."""
    from cdtcodec.rate.control import RateTarget

    given = [name for name, v in (("--quality", o.quality), ("--qstep", o.qstep), ("--target-kbps", o.target_kbps),
                                  ("--target-bpp", o.target_bpp)) if v is not None]
    if len(given) > 1 and not given == ["--quality", "--qstep"]:  # --qstep overriding --quality is documented
        fail(f"{' and '.join(given)} cannot be combined: give a quality, a step or one rate target")
    return (RateTarget("kbps", o.target_kbps) if o.target_kbps is not None else
            RateTarget("bpp", o.target_bpp) if o.target_bpp is not None else None)


def _rate_trial(target):
    """Prints each rate-control trial as it ends: the search is the encode's second phase."""
    def show(trial) -> None:
        rate = target.value * trial.bytes / trial.target
        where = "whole file" if trial.whole else f"estimate from {trial.chunks} chunks"
        err.print(f"rate control: step {trial.step:.5g} -> {rate:.4g} {target.unit} ({where}; target {target})",
                  highlight=False, markup=False, soft_wrap=True)

    return show
