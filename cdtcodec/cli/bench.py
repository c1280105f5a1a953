"""`cdtcodec demo` (the bundled clip through the codec) and `cdtcodec bench` (rate-distortion against the
reference encoders)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cdtcodec.cli.common import (
    ASSETS,
    DEVICE,
    PRECISION,
    THREADS,
    device_named,
    err,
    fail,
    friendly_errors,
    precision_for,
    set_threads,
)
from cdtcodec.cli.options import command
from cdtcodec.config import DEFAULT_MODEL
from cdtcodec.overwrite import confirm_output, policy
from cdtcodec.rate.quantize import DEFAULT_QUALITY, QUALITY_STEPS


@command()
@friendly_errors
def demo(
    output: Path = typer.Option(Path("recon.mp4"), "-o", "--output", help="Where to leave the decoded video."),
    model: str = typer.Option(DEFAULT_MODEL, help="Preset with shipped weights, or a weights file."),
    quality: int = typer.Option(DEFAULT_QUALITY, "--quality", "-q", min=min(QUALITY_STEPS), max=max(QUALITY_STEPS)),
    threads: int = THREADS,
    precision: str = PRECISION,
):
    """Encode and decode the bundled sample clip, then report rate, quality and time."""
    from cdtcodec.demo import run_demo

    set_threads(threads)
    run_demo(ASSETS / "sample.mp4", output, model=model, quality=quality, precision=precision_for(precision, "cpu"),
             console=err)


@command()
@friendly_errors
def bench(
    clips: Optional[list[str]] = typer.Argument(None, help="Video files (default with --quick: the bundled sample)."),
    codecs: Optional[str] = typer.Option(None, help="Comma-separated: cdt, cdt-range (the same model, version-1 range "
                                                    "coder), cdt-fp32 and cdt-bf16 (the same model at that precision), "
                                                    "x264, x265, svtav1 (default: all but cdt-fp32 and cdt-bf16)."),
    qualities: Optional[str] = typer.Option(None, help="cdt qualities, comma-separated (default: all)."),
    presets: Optional[str] = typer.Option(None, help="Reference encoder presets: medium, slow (default: both)."),
    crf: Optional[list[str]] = typer.Option(None, "--crf",
                                            help="CRF grid of a reference: CODEC=CRF,CRF,... (repeatable)."),
    size: Optional[int] = typer.Option(None, help="Clips are resized and centre-cropped to SIZE x SIZE (default 256)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames",
                                             help="At most the first N frames of each clip (default 33)."),
    output: Path = typer.Option(Path("results"), "-o", "--output", help="Output folder."),
    model: str = typer.Option(DEFAULT_MODEL, help="Preset with shipped weights, or a weights file."),
    quick: bool = typer.Option(False, "--quick", help="CI smoke run: one tiny clip (32x32, 5 frames), cdt at two "
                                                      "qualities against x264."),
    no_streams: bool = typer.Option(False, "--no-streams",
                                    help="Do not keep the encoded streams in the output folder's streams/."),
    report_frame: Optional[int] = typer.Option(None, "--report-frame",
                                               help="The frame report.html shows of each clip (default: the middle "
                                                    "one)."),
    threads: int = THREADS,
    device: str = DEVICE,
    precision: str = typer.Option("auto", help="auto, fp32 or bf16: the arithmetic of the cdt curves (the codecs "
                                               "cdt-fp32 and cdt-bf16 always run at theirs)."),
    yes: bool = typer.Option(False, "-y", "--overwrite",
                             help="Replace the results of an earlier run in the output folder."),
    no: bool = typer.Option(False, "-n", "--no-overwrite",
                            help="Refuse when the output folder holds an earlier run's results."),
):
    """Rate-distortion benchmark against x264/x265/SVT-AV1: results, plots, summary.md and report.html."""
    from bitstream.atomic import only_new
    from cdtcodec import bench as rd

    out = output
    # an earlier run's results mark OUT as used; results.json, written first, is kept if another run wrote it
    new_only = confirm_output(out / "results.json", policy(yes, no), clips or [])
    cfg = rd.make_config(clips, codecs=codecs, qualities=qualities, presets=presets, crfs=crf, size=size,
                         frames=max_frames, out=out, model=model, device=device_named(device),
                         precision=precision_for(precision, device_named(device)), threads=threads, quick=quick,
                         keep_streams=not no_streams, report_frame=report_frame)
    with only_new(*[out / "results.json"] if new_only else []):
        results = rd.run(cfg, console=err)
    for line in rd.console_lines(results, out):
        err.print(line, highlight=False, markup=False)
    if results.failed:
        fail(f"{results.failed} run(s) failed; see {out / 'results.json'}")
