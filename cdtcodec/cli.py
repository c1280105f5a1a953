"""The `cdtcodec` command line: argument parsing, progress and summaries only; the work lives elsewhere.

Why over 400 lines: one typer command per face (encode, decode, info, convert, train, demo, bench), each
only options and a call; splitting them would scatter the shared options and error handling.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from bitstream import BitstreamError
from cdtcodec import __version__
from cdtcodec.entropy_choice import ENTROPY_CHOICES, ENTROPY_DEFAULT
from cdtcodec.interrupts import interrupt_on
from cdtcodec.quantize import DEFAULT_QUALITY, QUALITY_STEPS
from cdtcodec.media import VideoError
from cdtcodec.train.loop import TrainConfig
from cdtcodec.weights import DEFAULT_MODEL, WeightsError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="cdtcodec: a video codec built on CDT, the conditioned diffusion-based video tokenizer.")
err = Console(stderr=True)
ASSETS = Path(__file__).resolve().parent / "assets"


def _fail(message: str, code: int = 1) -> None:
    line = " ".join(str(message).split())  # one line, whatever was interpolated into it
    err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _os_error(e: OSError) -> str:
    """'PATH: reason' for an OSError, without Python's '[Errno N]' decoration."""
    reason = e.strerror or str(e) or type(e).__name__
    return f"{e.filename}: {reason}" if e.filename else reason


def friendly_errors(fn):
    """Failures become one line on stderr and a non-zero exit code, never a traceback (set CDTCODEC_DEBUG=1
    to see one for an unexpected error). Ctrl-C exits with 130; the writers have removed any partial output."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from cdtcodec.codec import CodecError

        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except (CodecError, VideoError, BitstreamError, WeightsError) as e:
            _fail(str(e))
        except OSError as e:
            _fail(_os_error(e))
        except ValueError as e:
            _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
        except MemoryError:
            _fail("out of memory")
        except KeyboardInterrupt:
            _fail("interrupted; no output was written", 130)
        except Exception as e:
            if os.environ.get("CDTCODEC_DEBUG"):
                raise
            text = str(e).splitlines()[0] if str(e) else ""
            _fail(f"unexpected {type(e).__name__}{': ' + text if text else ''} (CDTCODEC_DEBUG=1 shows the traceback)")

    return wrapper


class FramesPerSecond(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:.2f} frames/s" if task.speed else "-- frames/s", style="cyan")


@contextmanager
def _progress(enabled: bool, label: str):
    """Yields a callback (done, total) that drives a rich bar on stderr when enabled and, always, turns a
    remembered Ctrl-C into KeyboardInterrupt (PyAV can swallow the one Python raises while FFmpeg is busy).
    The bar appears with the first report and is erased when the work fails, so an error prints its one line
    alone."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), FramesPerSecond(),
               TimeRemainingColumn()]
    bar = Progress(*columns, console=err, transient=False)
    task = bar.add_task(label, total=None)

    with interrupt_on(signal.SIGINT) as interrupted:
        def update(done: int, total: int | None) -> None:
            if interrupted:
                raise KeyboardInterrupt
            if not enabled:
                return
            if not bar.live.is_started:
                bar.start()
            bar.update(task, completed=done, total=total)

        try:
            yield update
            if interrupted:
                raise KeyboardInterrupt
        except BaseException:
            bar.live.transient = True
            raise
        finally:
            if bar.live.is_started:
                bar.stop()


def _set_threads(threads: int) -> None:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return name


@contextmanager
def _renamed(temporary: str, name: str):
    """Error messages that name a temporary stand-in for stdin/stdout name the stream instead."""
    try:
        yield
    except Exception as e:
        if e.args and isinstance(e.args[0], str) and temporary in e.args[0]:
            e.args = (e.args[0].replace(temporary, name), *e.args[1:])
        raise


@contextmanager
def _input_path(path: str, suffix: str):
    """A real path for `path`; '-' copies standard input to a temporary file first (containers need seeking)."""
    if path != "-":
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="cdtcodec-") as tmp:
        target = Path(tmp) / f"stdin{suffix}"
        with open(target, "wb") as f:
            shutil.copyfileobj(sys.stdin.buffer, f)
        with _renamed(str(target), "<stdin>"):
            yield str(target)


@contextmanager
def _output_path(path: str, suffix: str):
    """A real path for `path`; '-' writes to a temporary file, then copies it to standard output (only
    once it is complete, so a failed run writes nothing there)."""
    if path != "-":
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="cdtcodec-") as tmp:
        target = Path(tmp) / f"stdout{suffix}"
        with _renamed(str(target), "<stdout>"):
            yield str(target)
        try:
            with open(target, "rb") as f:
                shutil.copyfileobj(f, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            try:  # nothing more can reach the reader; keep the interpreter's final flush quiet
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            raise OSError("<stdout>: the reading end of the pipe closed before the whole output was written") from None


def _summary(kind: str, report, out: str, as_json: bool, quiet: bool) -> None:
    """--json: one JSON object on stdout (on stderr when stdout carries the output file); else, unless
    --quiet, one summary line on stderr."""
    if as_json:
        typer.echo(json.dumps({"command": kind, "output": out, **report.as_dict()}), err=out == "-")
    elif not quiet:
        d = report.as_dict()
        err.print(f"{kind}: {d['frames']} frames {d['width']}x{d['height']} @ {d['fps']} fps -> {out}: "
                  f"{d['bytes']:,} bytes, {d['bpp']:.4f} bpp, {d['kbps']:.1f} kbps, {d['seconds']:.1f} s "
                  f"({d['fps_processed']:.2f} frames/s), audio {d['audio']}"
                  + (f", entropy {d['entropy']}" if d.get("entropy") else ""),
                  highlight=False, markup=False, soft_wrap=True)
        if d.get("note"):
            err.print(f"note: {d['note']}", highlight=False, markup=False, soft_wrap=True)


THREADS = typer.Option(0, help="CPU threads for the model (0: torch's default, one per core).")
DEVICE = typer.Option("cpu", help="cpu, cuda, cuda:N or auto.")
AS_JSON = typer.Option(False, "--json", help="Print a machine-readable summary on stdout (on stderr with -o -).")
QUIET = typer.Option(False, "--quiet", help="No progress, no summary.")


@app.command()
@friendly_errors
def encode(
    input: str = typer.Argument(..., help="Video or still image (any format PyAV reads), or - for stdin."),
    output: str = typer.Option(..., "-o", "--output", help=".cdt file to write, or - for stdout."),
    quality: int = typer.Option(DEFAULT_QUALITY, "--quality", "-q", min=min(QUALITY_STEPS), max=max(QUALITY_STEPS),
                                help=f"1 (smallest) .. {max(QUALITY_STEPS)} (best); sets the quantizer step: "
                                     + ", ".join(f"{q}={s}" for q, s in QUALITY_STEPS.items())),
    step: Optional[float] = typer.Option(None, help="Quantizer step size (overrides --quality)."),
    model: str = typer.Option(DEFAULT_MODEL, help="Preset with shipped weights, or a weights file."),
    seed: int = typer.Option(0, min=0, max=2**64 - 1, help="Decoder noise seed, stored in the file."),
    steps: int = typer.Option(1, min=1, max=1000, help="DDIM sampling steps used at decode, stored in the file."),
    entropy: str = typer.Option(ENTROPY_DEFAULT, help=f"Entropy coder: {', '.join(ENTROPY_CHOICES)} (auto: the "
                                                      "model's prior, format 2, if it has one; else range, format 1)."),
    start: float = typer.Option(0.0, min=0.0, help="Start time in seconds."),
    frames: Optional[int] = typer.Option(None, min=1, help="Encode at most this many frames."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Do not carry the source audio."),
    threads: int = THREADS,
    device: str = DEVICE,
    as_json: bool = AS_JSON,
    quiet: bool = QUIET,
):
    """Encode a video into a .cdt file."""
    from cdtcodec import codec

    _set_threads(threads)
    device = _device(device)
    with _input_path(input, ".video") as src, _output_path(output, ".cdt") as dst, \
            _progress(not (quiet or as_json), "encode") as progress:
        report = codec.encode(src, dst, model=model, quality=quality, step=step, seed=seed, steps=steps,
                              entropy=entropy, start_s=start, max_frames=frames, audio=not no_audio,
                              device=device, progress=progress)
    _summary("encode", report, output, as_json, quiet)


@app.command()
@friendly_errors
def decode(
    input: str = typer.Argument(..., help=".cdt file, or - for stdin."),
    output: str = typer.Option(..., "-o", "--output",
                               help="Video file (.mp4/.mkv/.mov), .y4m, a folder for PNGs (ends with /), or - (y4m on stdout)."),
    frames: Optional[str] = typer.Option(None, help="Only frames A:B (B exclusive); decoding stops after B."),
    codec_name: str = typer.Option("libx264", "--codec", help="Video encoder of the output file."),
    crf: int = typer.Option(12, min=0, max=63, help="CRF of the output video encoder."),
    preset: str = typer.Option("medium", help="Preset of the output video encoder."),
    model: Optional[str] = typer.Option(None, help="Weights file to use instead of the one the file names."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Do not put the audio back."),
    threads: int = THREADS,
    device: str = DEVICE,
    as_json: bool = AS_JSON,
    quiet: bool = QUIET,
):
    """Decode a .cdt file into a video."""
    from cdtcodec import codec

    _set_threads(threads)
    device = _device(device)
    with _input_path(input, ".cdt") as src, _output_path(output, ".y4m") as dst, \
            _progress(not (quiet or as_json), "decode") as progress:
        report = codec.decode(src, dst, frames=frames, model=model, codec=codec_name, crf=crf, preset=preset,
                              audio=not no_audio, device=device, progress=progress)
    _summary("decode", report, output, as_json, quiet)


@app.command()
@friendly_errors
def info(
    input: str = typer.Argument(..., help=".cdt file, or - for stdin."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    verify: bool = typer.Option(False, "--verify", help="Also check every chunk's and audio packet's CRC and "
                                                        "entropy coding (fast: no neural decode)."),
    model: Optional[str] = typer.Option(None, help="Weights whose prior --verify uses (default: those the file names)."),
):
    """Show a .cdt file's header, sizes, rate and chunk table."""
    from cdtcodec.info import describe

    with _input_path(input, ".cdt") as src:
        data = describe(src, verify=verify, model=model)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    out = Console()
    table = Table(title=Text(input), show_header=False)
    for key, value in data["header"].items():
        table.add_row(key, Text(str(value)))
    for key in ("file_bytes", "header_bytes", "index_bytes", "audio_bytes", "payload_bytes", "framing_bytes",
                "other_bytes", "bpp", "kbps"):
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


@app.command()
@friendly_errors
def convert(
    checkpoint: Path = typer.Argument(..., help="Official CDT checkpoint (.ckpt/.pt/.pth or .safetensors)."),
    output: Path = typer.Option(..., "-o", "--output", help="Our .safetensors file to write."),
    preset: Optional[str] = typer.Option(None, help="cdt-base or cdt-small (detected from the shapes if omitted)."),
    half: bool = typer.Option(False, "--half", help="Store fp16 (the official evaluation ran through fp16 weights)."),
):
    """Convert an official CDT-B / CDT-S checkpoint into a cdtcodec weights file."""
    from cdtcodec.config import get_config
    from cdtcodec.model import CDT
    from cdtcodec.weights import convert_official, save_model

    name, state = convert_official(checkpoint, preset)
    model = CDT(get_config(name))
    model.load_state_dict(state, strict=True)
    save_model(model, output, name, half=half, extra={"source": checkpoint.name})
    err.print(f"converted {checkpoint} ({name}, {len(state)} tensors) -> {output}")


_TRAIN = TrainConfig()  # the defaults live in TrainConfig; the options show them, never retype them


@app.command()
@friendly_errors
def train(
    model: str = typer.Option(_TRAIN.model, help="Preset to train from scratch, or weights to fine-tune from."),
    data: Path = typer.Option(Path(_TRAIN.data), help="Data set built by scripts/build_dataset.py."),
    out: Path = typer.Option(Path(_TRAIN.out), help="Run directory; a checkpoint there is resumed."),
    steps: int = typer.Option(_TRAIN.steps, min=1),
    batch: int = typer.Option(_TRAIN.batch, min=1, help="Clips per process per step."),
    frames: int = typer.Option(_TRAIN.frames, min=1, help="Frames per clip (1 + 4k)."),
    crop: int = typer.Option(_TRAIN.crop, min=16, help="Square crop size (multiple of 16)."),
    lr: float = typer.Option(_TRAIN.lr),
    kl_weight: float = typer.Option(_TRAIN.kl_weight),
    lpips_weight: float = typer.Option(_TRAIN.lpips_weight),
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
):
    """Train (or fine-tune) a model; run under torchrun for several processes (DDP)."""
    from cdtcodec.timeline import CODEC_TIMELINE
    from cdtcodec.train.run import run_training

    if CODEC_TIMELINE.coded_frames(frames) != frames:
        raise ValueError(f"--frames must be 1 + {CODEC_TIMELINE.temporal}k (e.g. 9, 17)")
    if crop % 16:
        raise ValueError("--crop must be a multiple of 16")
    cfg = TrainConfig(model=model, data=str(data), out=str(out), steps=steps, batch=batch, frames=frames, crop=crop,
                      lr=lr, kl_weight=kl_weight, lpips_weight=lpips_weight, inference_share=inference_share,
                      ema=ema, seed=seed, val_every=val_every, ckpt_every=ckpt_every, workers=workers,
                      device=device, threads=threads)
    run_training(cfg, export=export, console=err)


@app.command()
@friendly_errors
def demo(
    output: Path = typer.Option(Path("recon.mp4"), "-o", "--output", help="Where to leave the decoded video."),
    model: str = typer.Option(DEFAULT_MODEL, help="Preset with shipped weights, or a weights file."),
    quality: int = typer.Option(DEFAULT_QUALITY, "--quality", "-q", min=min(QUALITY_STEPS), max=max(QUALITY_STEPS)),
    threads: int = THREADS,
):
    """Encode and decode the bundled sample clip, then report rate, quality and time."""
    from cdtcodec.demo import run_demo

    _set_threads(threads)
    run_demo(ASSETS / "sample.mp4", output, model=model, quality=quality, console=err)


@app.command()
@friendly_errors
def bench(
    clips: Optional[list[str]] = typer.Argument(None, help="Video files (default with --quick: the bundled sample)."),
    codecs: Optional[str] = typer.Option(None, help="Comma-separated: cdt, x264, x265, svtav1 (default: all)."),
    qualities: Optional[str] = typer.Option(None, help="cdt qualities, comma-separated (default: all)."),
    presets: Optional[str] = typer.Option(None, help="Reference encoder presets: medium, slow (default: both)."),
    crf: Optional[list[str]] = typer.Option(None, "--crf", help="CRF grid of a reference: CODEC=CRF,CRF,... (repeatable)."),
    size: Optional[int] = typer.Option(None, help="Clips are resized and centre-cropped to SIZE x SIZE (default 256)."),
    frames: Optional[int] = typer.Option(None, help="The first N frames of each clip (default 33)."),
    out: Path = typer.Option(Path("results"), "--out", "-o", help="Output folder."),
    model: str = typer.Option(DEFAULT_MODEL, help="Preset with shipped weights, or a weights file."),
    quick: bool = typer.Option(False, "--quick", help="CI smoke run: one tiny clip (32x32, 5 frames), cdt at two qualities against x264."),
    no_streams: bool = typer.Option(False, "--no-streams", help="Do not keep the encoded streams in OUT/streams."),
    threads: int = THREADS,
    device: str = DEVICE,
):
    """Rate-distortion benchmark against x264/x265/SVT-AV1: results.json, results.csv, plots, summary.md."""
    from cdtcodec import bench as rd

    cfg = rd.make_config(clips, codecs=codecs, qualities=qualities, presets=presets, crfs=crf, size=size,
                         frames=frames, out=out, model=model, device=_device(device), threads=threads, quick=quick,
                         keep_streams=not no_streams)
    results = rd.run(cfg, console=err)
    for line in rd.console_lines(results, out):
        err.print(line, highlight=False, markup=False)
    if results["failed"]:
        _fail(f"{results['failed']} run(s) failed; see {out / 'results.json'}")


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        typer.echo(f"cdtcodec {__version__}")
        raise typer.Exit()


def main() -> None:
    from cdtcodec.allocator import keep_freed_memory

    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    keep_freed_memory()  # the process's allocator, before the first large tensor (see cdtcodec/allocator.py)
    app()
