"""`cdtcodec decode` (a .cdt file, or a clip of a latent shard, into a video) and `cdtcodec info`."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cdtcodec.cli.common import (
    AS_JSON,
    DEVICE,
    MAX_MEMORY,
    NO,
    PRECISION,
    QUIET,
    THREADS,
    YES,
    device_named,
    friendly_errors,
    input_path,
    memory,
    output_path,
    precision_for,
    progress_bar,
    set_threads,
    summary,
)
from cdtcodec.cli.options import command
from cdtcodec.overwrite import confirm_output, policy


@command()
@friendly_errors
def decode(
    input: str = typer.Argument(..., help=".cdt file, - for stdin, or one clip of a latent shard: SHARD.tar#KEY "
                                          "(SHARD.tar alone when it holds one clip)."),
    output: str = typer.Option(..., "-o", "--output",
                               help="Video file (.mp4/.mkv/.mov), .y4m, a folder for PNGs (ends with /), or - (y4m "
                                    "on stdout)."),
    frames: Optional[str] = typer.Option(None, help="Only frames A:B (B exclusive); decoding stops after B."),
    codec_name: Optional[str] = typer.Option(None, "--codec", help="Video encoder of the output file (default: "
                                             "by container: libx264 for mp4/mkv/mov, libvpx-vp9 for webm)."),
    crf: int = typer.Option(12, min=0, max=63, help="CRF of the output video encoder."),
    preset: str = typer.Option("medium", help="Preset of the output video encoder."),
    model: Optional[str] = typer.Option(None, help="Weights file to use instead of the one the file names."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Do not put the audio back."),
    threads: int = THREADS,
    device: str = DEVICE,
    precision: str = PRECISION,
    as_json: bool = AS_JSON,
    quiet: bool = QUIET,
    max_memory: Optional[str] = MAX_MEMORY,
    yes: bool = YES,
    no: bool = NO,
):
    """Decode a .cdt file (or a clip of a latent shard) into a video."""
    from cdtcodec import codec
    from cdtcodec.corpus.shards import decode_entry, split_entry

    entry = split_entry(input) if input != "-" else None
    new_only = confirm_output(output, policy(yes, no), [entry[0] if entry else input, *([model] if model else [])],
                              folder=True)
    if entry is not None:  # latents: no audio, noise seed 0, the model's sampling steps
        set_threads(threads)
        device = device_named(device)
        precision = precision_for(precision, device)
        with output_path(output, ".y4m", new_only, staged=False) as dst, \
                progress_bar(not (quiet or as_json), "decode") as progress:
            report = decode_entry(*entry, dst, frames=frames, model=model, codec=codec_name, crf=crf, preset=preset,
                                  device=device, precision=precision, progress=progress,
                                  max_memory=memory(max_memory))
        summary("decode", report, output, as_json, quiet)
        return
    set_threads(threads)
    device = device_named(device)
    precision = precision_for(precision, device)
    with input_path(input, ".cdt") as src, output_path(output, ".y4m", new_only, staged=False) as dst, \
            progress_bar(not (quiet or as_json), "decode") as progress:
        report = codec.decode(src, dst, frames=frames, model=model, codec=codec_name, crf=crf, preset=preset,
                              audio=not no_audio, device=device, precision=precision, progress=progress,
                              max_memory=memory(max_memory))
    summary("decode", report, output, as_json, quiet)


@command()
@friendly_errors
def info(
    input: str = typer.Argument(..., help=".cdt file, or - for stdin."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    verify: bool = typer.Option(False, "--verify", help="Also check every chunk's and audio packet's CRC and "
                                                        "entropy coding (fast: no neural decode)."),
    model: Optional[str] = typer.Option(None,
                                        help="Weights whose prior --verify uses (default: those the file names)."),
):
    """Show a .cdt file's header, sizes, rate and chunk table."""
    from cdtcodec.endpoints import require_stdout
    from cdtcodec.info import describe

    require_stdout()  # what it shows goes there
    with input_path(input, ".cdt") as src:
        data = describe(src, verify=verify, model=model)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    out = Console(emoji=False, highlight=False)
    table = Table(title=Text(input), show_header=False)
    table.add_row("format version", data["version"])
    for key, value in data["header"].items():
        table.add_row(key, Text(str(value)))
    display = data["display"]
    table.add_row("rotation", f"{display['rotation']:g} degrees counter-clockwise"
                  + (", mirrored" if display["mirrored"] else ""))
    times = data["frame_times"]
    table.add_row("frame times", "on the frame-rate grid" if times is None else
                  f"{times['recorded']:,} recorded off the grid in {times['records']:,} record(s); "
                  f"the last frame ends at {times['end_s']:.6g} s")
    for key in ("file_bytes", "header_bytes", "index_bytes", "audio_bytes", "frame_times_bytes", "payload_bytes",
                "framing_bytes", "other_bytes", "bpp", "kbps"):
        value = data[key]
        table.add_row(key, f"{value:,.4f}" if isinstance(value, float) else f"{value:,}")
    out.print(table)
    chunks = Table("chunk", "frames", "bytes", "bpp", title="chunks")
    for c in data["chunks"]:
        chunks.add_row(str(c["index"]), f"{c['first_frame']}..{c['first_frame'] + c['frames'] - 1}",
                       f"{c['bytes']:,}", f"{c['bpp']:.4f}")
    out.print(chunks)
    if data["verified"]:
        v = data["verified"]
        out.print(f"verified: {v['chunks']} chunks and {v['audio_packets']} audio packets intact")
