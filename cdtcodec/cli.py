"""The `cdtcodec` command line: argument parsing, progress and summaries only; the work lives elsewhere.

Why over 400 lines: one typer command per face (encode, decode, info, convert, train, demo, bench), each
only options and a call; splitting them would scatter the shared options and error handling.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
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
from bitstream.spec import MAX_SAMPLING_STEPS
from cdtcodec import __version__
from cdtcodec.config import DEFAULT_MODEL
from cdtcodec.corpus import DEFAULT_SHARD_SIZE
from cdtcodec.errors import ParamError
from cdtcodec.interrupts import FATAL_SIGNALS, Interrupted, interrupt_on, signals_caught
from cdtcodec.overwrite import OutputRefused, confirm_output, policy
from cdtcodec.rate.coder_choice import ENTROPY_CHOICES, ENTROPY_DEFAULT
from cdtcodec.rate.quantize import DEFAULT_QUALITY, QUALITY_STEPS
from cdtcodec.train.config import TrainConfig

# Importing this module stays light (no torch, no PyAV): main() installs the signal handlers before anything
# slow is loaded, so Ctrl-C in the first seconds is handled like any other.

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="cdtcodec: a video codec built on CDT, the conditioned diffusion-based video tokenizer.")
# User text (file names, messages quoting them) is printed as it is: no emoji codes (`clip:fire:.mp4`, `3:-1`)
# and, unless escaped, no markup ([bold]); see _fail for the one styled prefix.
err = Console(stderr=True, emoji=False, highlight=False)
ASSETS = Path(__file__).resolve().parent / "assets"


def _fail(message: str, code: int = 1) -> None:
    line = " ".join(str(message).split())  # one line, whatever was interpolated into it
    err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _os_error(e: OSError) -> str:
    """'PATH: reason' for an OSError, without Python's '[Errno N]' decoration."""
    reason = e.strerror or str(e) or type(e).__name__
    return f"{e.filename}: {reason}" if e.filename else reason


#: How the command line spells the library parameters that errors name (ParamError): the option that sets each.
OPTIONS = {"step": "--step", "steps": "--steps", "entropy": "--entropy", "seed": "--seed", "frames": "--frames",
           "model": "--model PATH", "codecs": "--codecs", "qualities": "--qualities", "presets": "--presets",
           "crfs": "--crf", "size": "--size", "quick": "--quick", "max_memory": "--max-memory SIZE",
           "target_kbps": "--target-kbps", "target_bpp": "--target-bpp", "jobs": "--jobs",
           "shard_size": "--shard-size", "latents": "--latent-dtype", "summary": "--summary", "ray": "--ray",
           "report_frame": "--report-frame"}


SIGPIPE_EXIT = 128 + getattr(signal, "SIGPIPE", 13)  # a closed stdout pipe exits as if SIGPIPE had ended it


def _user_errors() -> tuple[type, ...]:
    """The error types whose message is meant for the user. Looked up among the modules already loaded (only
    those can have raised one), so that reporting an early error never waits for torch to load."""
    found: list[type] = [BitstreamError, OutputRefused]
    for module, name in (("cdtcodec.codec", "CodecError"), ("cdtcodec.media.errors", "VideoError"),
                         ("cdtcodec.weights", "WeightsError"), ("cdtcodec.limits", "MemoryLimitExceeded"),
                         ("cdtcodec.corpus.errors", "CorpusError"), ("cdtcodec.corpus.inputs", "InputError"),
                         ("cdtcodec.corpus.shards", "ShardError")):
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


def _silence_stdout() -> None:
    """Nothing more can reach the reader of a closed pipe; keep the interpreter's final flush quiet."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def friendly_errors(fn):
    """Failures become one line on stderr and a non-zero exit code, never a traceback (set CDTCODEC_DEBUG=1
    to see one for an unexpected error). A signal that ends the process (INT, TERM, HUP) exits with 128 + its
    number and a closed stdout pipe with 141; the writers have removed any partial output by then."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        received: list[int] = []
        try:
            try:
                with signals_caught(*FATAL_SIGNALS) as received:
                    return fn(*args, **kwargs)
            except (typer.Exit, typer.Abort):
                raise  # the command ended itself, having said why (a corpus reports its signal with its tally)
            except Exception:
                if not received:
                    raise
                # The signal's exception cut a library object short (rich's live display, say) and its clean-up
                # failed in turn: that error is the signal's doing, and the signal is what to report.
                raise Interrupted(received[0]) from None
        except (typer.Exit, typer.Abort):
            raise
        except Interrupted as e:
            _fail(f"interrupted by {e.name}; no output was written", e.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; no output was written", 130)
        except BrokenPipeError:
            _silence_stdout()
            _fail("standard output was closed before everything was written (broken pipe)", SIGPIPE_EXIT)
        except ParamError as e:  # the library names its parameter; the user set it with an option
            _fail(e.worded(OPTIONS.get(e.param, e.param)))
        except _user_errors() as e:
            _fail(str(e))
        except OSError as e:
            _fail(_os_error(e))
        except ValueError as e:
            _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
        except MemoryError:
            _fail("out of memory")
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

    with interrupt_on(*FATAL_SIGNALS) as interrupted:
        def update(done: int, total: int | None) -> None:
            if interrupted:
                raise Interrupted(interrupted[0])
            if not enabled:
                return
            if not bar.live.is_started:
                bar.start()
            bar.update(task, completed=done, total=total)

        try:
            yield update
            if interrupted:
                raise Interrupted(interrupted[0])
        except BaseException:
            bar.live.transient = True
            raise
        finally:
            if bar.live.is_started:
                bar.stop()


def _warn(line: str) -> None:
    err.print(f"warning: {' '.join(line.split())}", markup=False, soft_wrap=True)


def _memory(size: str | None) -> int | None:
    from cdtcodec.limits import parse_size

    return None if size is None else parse_size(size)


def _set_threads(threads: int) -> None:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def _device(name: str, here: bool = True) -> str:
    """The device `name` means, checked; `here` False (Ray actors on other machines) checks only its spelling."""
    kind, _, index = name.partition(":")
    if name != "auto" and (kind not in ("cpu", "cuda") or (index and not (kind == "cuda" and index.isdigit()))):
        raise ValueError(f"--device {name}: unknown device (use cpu, cuda, cuda:N or auto)")
    if not here:
        return name
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is available")
    if index and int(index) >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: there are {torch.cuda.device_count()} CUDA devices")
    return name


def _precision(choice: str, device: str | None) -> str:
    """--precision checked and resolved for `device` (auto: bf16 where that device does it fast); `device` None
    (corpus workers, which resolve it on their own devices) keeps auto."""
    from cdtcodec.precision import CHOICES, resolve

    if choice not in CHOICES:
        raise ValueError(f"--precision {choice}: unknown precision (use {', '.join(CHOICES)})")
    return choice if device is None else resolve(choice, device)


def _note(line: str) -> None:
    err.print(f"note: {' '.join(line.split())}", markup=False, highlight=False, soft_wrap=True)


def _input_path(path: str, suffix: str):
    """A path the command may open as often as it likes: `path`, or a copy of standard input ('-') or of what
    cannot be read twice (a FIFO, `<(...)`); see cdtcodec/endpoints.py."""
    from cdtcodec.endpoints import input_path

    return input_path(path, suffix, say=_note)


def _output_path(path: str, suffix: str, new_only: bool = False, staged: bool = True):
    """A path the writer makes `path` at; '-' (and a device or FIFO when `staged`) through a temporary copied
    there once complete, so a failed run writes nothing there; see cdtcodec/endpoints.py."""
    from cdtcodec.endpoints import output_path

    return output_path(path, suffix, staged=staged, new_only=new_only, say=_note)


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
                  + (f", entropy {d['entropy']}" if d.get("entropy") else "")
                  + (f", step {d['step']:.5g} for the target {d['target']}" if d.get("target") else ""),
                  highlight=False, markup=False, soft_wrap=True)
        if d.get("note"):
            err.print(f"note: {d['note']}", highlight=False, markup=False, soft_wrap=True)


MAX_THREADS = 256
THREADS = typer.Option(0, min=0, max=MAX_THREADS, help="CPU threads for the model (0: torch's default, one per core).")
DEVICE = typer.Option("cpu", help="cpu, cuda, cuda:N or auto.")
PRECISION = typer.Option("auto", help="auto, fp32 or bf16: the networks' arithmetic (auto: bf16 where the device "
                                      "does it fast: AMX-BF16 / AVX512-BF16 CPUs, CUDA with bf16).")
AS_JSON = typer.Option(False, "--json", help="Print a machine-readable summary on stdout (on stderr with -o -).")
QUIET = typer.Option(False, "--quiet", help="No progress, no summary.")
MAX_MEMORY = typer.Option(None, "--max-memory", metavar="SIZE",
                          help="Refuse work whose estimated memory exceeds SIZE (e.g. 16G; default: the machine's "
                               "memory, or CDTCODEC_MAX_MEMORY).")
YES = typer.Option(False, "-y", "--overwrite", help="Replace an existing output without asking.")
NO = typer.Option(False, "-n", "--no-overwrite", help="Never replace an existing output (refuse at once).")


@app.command()
@friendly_errors
def encode(
    inputs: list[str] = typer.Argument(..., metavar="INPUT",
                                       help="Video or still image (any format PyAV reads), or - for stdin. Several "
                                            "inputs, folders (their videos, recursively) or @list.txt manifests "
                                            "(one path a line) make a corpus, written into -o DIR/."),
    output: str = typer.Option(..., "-o", "--output", help=".cdt file to write, - for stdout, or DIR/ for a corpus."),
    quality: Optional[int] = typer.Option(None, "--quality", "-q", min=min(QUALITY_STEPS), max=max(QUALITY_STEPS),
                                          help=f"1 (smallest) .. {max(QUALITY_STEPS)} (best), default {DEFAULT_QUALITY}; "
                                               "a level of the weights' quality scale: a quantizer step, with "
                                               "per-channel gains where the scale has them (docs/rate.md)."),
    step: Optional[float] = typer.Option(None, help="Quantizer step size (overrides --quality)."),
    target_kbps: Optional[float] = typer.Option(None, "--target-kbps", help="Rate control: search the step so that "
                                                "the whole file (audio included) lands within 2% of this many kbps; "
                                                "instead of --quality / --step."),
    target_bpp: Optional[float] = typer.Option(None, "--target-bpp", help="Rate control, the target in bits per "
                                               "pixel (file bits / (frames x width x height))."),
    model: str = typer.Option(DEFAULT_MODEL, help="Preset with shipped weights, or a weights file."),
    seed: int = typer.Option(0, min=0, max=2**64 - 1, help="Decoder noise seed, stored in the file."),
    steps: int = typer.Option(1, min=1, max=MAX_SAMPLING_STEPS, help="DDIM sampling steps used at decode, stored in the file."),
    entropy: str = typer.Option(ENTROPY_DEFAULT, help=f"Entropy coder: {', '.join(ENTROPY_CHOICES)} (auto: the "
                                                      "model's prior, format 2, if it has one; else range, format 1)."),
    start: float = typer.Option(0.0, min=0.0, help="Start time in seconds."),
    frames: Optional[int] = typer.Option(None, min=1, help="Encode at most this many frames."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Do not carry the source audio."),
    threads: int = typer.Option(0, min=0, max=MAX_THREADS,
                                help="CPU threads for the model (0: torch's default, one per core); a corpus "
                                     "splits them between its --jobs; with --ray, each actor's."),
    device: str = DEVICE,
    precision: str = PRECISION,
    as_json: bool = AS_JSON,
    quiet: bool = QUIET,
    max_memory: Optional[str] = MAX_MEMORY,
    yes: bool = YES,
    no: bool = NO,
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1,
                                       help="Corpus: worker processes, each loading the model once (default 1); "
                                            "with --ray, actors (default: as many as the cluster holds)."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS|local",
                                      help="Corpus on Ray: local starts Ray on this machine, else a cluster "
                                           "address (auto, ray://HEAD:10001). Needs pip install 'cdtcodec[ray]'."),
    latents: bool = typer.Option(False, "--latents",
                                 help="Corpus: WebDataset tar shards of the posterior means with per-clip metadata "
                                      "(training latents) instead of .cdt files."),
    latent_dtype: str = typer.Option("float16", "--latent-dtype", help="Latents' dtype: float16 or bfloat16."),
    shard_size: int = typer.Option(DEFAULT_SHARD_SIZE, "--shard-size", min=1, help="Clips per latent shard."),
    summary: Optional[str] = typer.Option(None, "--summary", metavar="PATH",
                                          help="Corpus: the JSONL summary, one line per clip "
                                               "(default DIR/summary.jsonl)."),
):
    """Encode a video into a .cdt file, or a corpus into a folder of .cdt files or latent shards."""
    if _corpus_reason(inputs, output, latents, ray):
        _encode_corpus(**locals())  # the options, all of them (nothing else is defined yet)
        return
    from cdtcodec import codec

    input = inputs[0]
    target = _rate_target(quality, step, target_kbps, target_bpp)
    new_only = confirm_output(output, policy(yes, no), [input])
    _set_threads(threads)
    device = _device(device)
    precision = _precision(precision, device)
    with _input_path(input, ".video") as src, _output_path(output, ".cdt", new_only) as dst, \
            _progress(not (quiet or as_json), "encode") as progress:
        report = codec.encode(src, dst, model=model, quality=quality, step=step, target=target, seed=seed,
                              steps=steps, entropy=entropy, start_s=start, max_frames=frames, audio=not no_audio,
                              device=device, precision=precision, progress=progress,
                              max_memory=_memory(max_memory), notice=None if quiet else _warn,
                              rate_progress=None if (quiet or as_json) else _rate_trial(target))
    _summary("encode", report, output, as_json, quiet)


def _rate_target(quality, step, target_kbps, target_bpp):
    """The rate target the options ask for (None: a quality or a step); combinations that mean two are refused."""
    from cdtcodec.rate.control import RateTarget

    given = [name for name, v in (("--quality", quality), ("--step", step), ("--target-kbps", target_kbps),
                                  ("--target-bpp", target_bpp)) if v is not None]
    if len(given) > 1 and not given == ["--quality", "--step"]:  # --step overriding --quality is documented
        _fail(f"{' and '.join(given)} cannot be combined: give a quality, a step or one rate target")
    return (RateTarget("kbps", target_kbps) if target_kbps is not None else
            RateTarget("bpp", target_bpp) if target_bpp is not None else None)


def _rate_trial(target):
    """Prints each rate-control trial as it ends: the search is the encode's second phase."""
    def show(trial) -> None:
        rate = target.value * trial.bytes / trial.target
        where = "whole file" if trial.whole else f"estimate from {trial.chunks} chunks"
        err.print(f"rate control: step {trial.step:.5g} -> {rate:.4g} {target.unit} ({where}; target {target})",
                  highlight=False, markup=False, soft_wrap=True)

    return show


def _corpus_reason(inputs: list[str], output: str, latents: bool, ray: str | None) -> str:
    """Why these arguments are a corpus ('' when they are one encode): the first that makes them one."""
    if len(inputs) > 1:
        return "several inputs"
    if inputs[0].startswith("@"):
        return f"the manifest {inputs[0]}"
    if inputs[0] != "-" and os.path.isdir(inputs[0]):
        return f"the folder {inputs[0]}"
    if output.endswith(("/", os.sep)):
        return "a folder output"
    return "--latents" if latents else "--ray" if ray is not None else ""


class _CorpusBar:
    """The corpus's one progress bar (files and frames, rate, ETA over the estimated frames in all), and its
    lines printed above it: a cdtcodec.corpus.Listener."""

    def __init__(self, enabled: bool, quiet: bool):
        self.enabled, self.quiet = enabled, quiet
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            TextColumn("{task.fields[files]}"), TextColumn("{task.fields[frames]}"),
                            FramesPerSecond(), TimeRemainingColumn(), console=err, transient=False)
        self.task = self.bar.add_task("encode", total=None, files="", frames="")

    def progress(self, tally) -> None:
        if not self.enabled:
            return
        if not self.bar.live.is_started:
            self.bar.start()
        expected = tally.frames_expected
        skipped = f", {tally.skipped} complete" if tally.skipped else ""
        failed = f", {tally.failed + tally.refused} failed" if tally.failed + tally.refused else ""
        self.bar.update(self.task, completed=tally.frames, total=expected,
                        files=f"{tally.done}/{tally.files} files{skipped}{failed}",
                        frames=f"{tally.frames}/{'~' if expected and tally.done < tally.files else ''}"
                               f"{expected if expected is not None else '?'} frames")

    def say(self, line: str) -> None:
        if not self.quiet:
            err.print(line, markup=False, highlight=False, soft_wrap=True)

    def status(self, text: str) -> None:
        if self.enabled:
            if not self.bar.live.is_started:
                self.bar.start()
            self.bar.update(self.task, description=f"encode ({escape(text)})" if text else "encode")  # markup

    def stop(self, erase: bool) -> None:
        if self.bar.live.is_started:
            self.bar.live.transient = erase
            self.bar.stop()


def _encode_corpus(inputs: list[str], output: str, quality, step, target_kbps, target_bpp, model: str, seed: int,
                   steps: int, entropy: str, start: float, frames, no_audio: bool, threads: int, device: str,
                   precision: str, as_json: bool, quiet: bool, max_memory, yes: bool, no: bool, jobs, ray, latents: bool,
                   latent_dtype: str, shard_size: int, summary) -> None:
    """`cdtcodec encode` of a corpus (see cdtcodec/corpus): one line per failed clip, a summary line, and a
    non-zero exit when any clip failed."""
    from cdtcodec.corpus import Settings, encode_corpus

    reason = _corpus_reason(inputs, output, latents, ray)
    for option, value in (("--target-kbps", target_kbps), ("--target-bpp", target_bpp)):
        # Rate control gives each file its own step, which a rerun could not check a finished clip against
        # (the plan compares each .cdt's step with the corpus's); a corpus is coded at one step throughout.
        if value is not None:
            raise ValueError(f"{option}: rate control encodes one file; a corpus ({reason}) is encoded at one "
                             "--quality or --step for all its clips")
    if "-" in inputs:
        raise ValueError("-: standard input cannot be part of a corpus (" + reason + ")")
    if output == "-" or not (output.endswith(("/", os.sep)) or os.path.isdir(output)):
        if reason.startswith("the folder"):
            raise ValueError(f"{inputs[0]}: is a directory; to encode the videos in it, give a folder output "
                             "(-o DIR/)")
        raise ValueError(f"-o {output}: a corpus ({reason}) is written into a folder; end the output with / "
                         f"(-o {'DIR' if output == '-' else output}/)")
    rule = policy(yes, no)
    settings = Settings(model=model, quality=quality, step=step, seed=seed, steps=steps, entropy=entropy,
                        start_s=start, max_frames=frames, audio=not no_audio,
                        device=_device(device, here=ray is None), max_memory=_memory(max_memory), threads=threads,
                        precision=_precision(precision, None),
                        latents=latent_dtype if latents else None, option_names=tuple(OPTIONS.items()))
    bar = _CorpusBar(not (quiet or as_json), quiet)
    try:
        result = encode_corpus(inputs, output, settings, jobs=jobs, ray=ray, rule=rule, shard_size=shard_size,
                               summary=summary, listener=bar)
    except BaseException:
        bar.stop(erase=True)
        raise
    bar.stop(erase=False)
    t = result.totals
    if result.interrupted is not None:
        e = result.interrupted
        _fail(f"interrupted by {e.name}; {t.encoded} clip(s) encoded in this run, {t.skipped} were complete before, "
              f"{t.interrupted} not written (run the same command again to finish them); summary {result.summary}",
              e.exit_code)
    failed = result.failed
    if as_json:
        typer.echo(json.dumps({"command": "encode", "output": result.out_dir, "summary": result.summary,
                               **t.as_dict(), "model_loads": len(result.load_seconds),
                               "model_load_seconds": sum(result.load_seconds),
                               "failed_inputs": [o.input for o in failed]}))
    elif not quiet:
        err.print(f"encode: {t.inputs} inputs -> {output}: {t.encoded} encoded, {t.skipped} already "
                  f"complete, {t.failed} failed; {t.frames} frames, {t.bytes:,} bytes, {t.bpp:.4f} bpp, "
                  f"{t.seconds:.1f} s ({t.fps_processed:.2f} frames/s); summary {result.summary}",
                  highlight=False, markup=False, soft_wrap=True)
    if failed:
        names = ", ".join(result.shown[o.index] for o in failed[:3])
        names += f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        _fail(f"{len(failed)} of {t.inputs} inputs failed ({names}); see {result.summary}")


@app.command()
@friendly_errors
def decode(
    input: str = typer.Argument(..., help=".cdt file, - for stdin, or one clip of a latent shard: SHARD.tar#KEY "
                                          "(SHARD.tar alone when it holds one clip)."),
    output: str = typer.Option(..., "-o", "--output",
                               help="Video file (.mp4/.mkv/.mov), .y4m, a folder for PNGs (ends with /), or - (y4m on stdout)."),
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
        _set_threads(threads)
        device = _device(device)
        precision = _precision(precision, device)
        with _output_path(output, ".y4m", new_only, staged=False) as dst, \
                _progress(not (quiet or as_json), "decode") as progress:
            report = decode_entry(*entry, dst, frames=frames, model=model, codec=codec_name, crf=crf, preset=preset,
                                  device=device, precision=precision, progress=progress,
                                  max_memory=_memory(max_memory))
        _summary("decode", report, output, as_json, quiet)
        return
    _set_threads(threads)
    device = _device(device)
    precision = _precision(precision, device)
    with _input_path(input, ".cdt") as src, _output_path(output, ".y4m", new_only, staged=False) as dst, \
            _progress(not (quiet or as_json), "decode") as progress:
        report = codec.decode(src, dst, frames=frames, model=model, codec=codec_name, crf=crf, preset=preset,
                              audio=not no_audio, device=device, precision=precision, progress=progress,
                              max_memory=_memory(max_memory))
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
    from cdtcodec.endpoints import require_stdout
    from cdtcodec.info import describe

    require_stdout()  # what it shows goes there
    with _input_path(input, ".cdt") as src:
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


@app.command()
@friendly_errors
def convert(
    checkpoint: Path = typer.Argument(..., help="Official CDT checkpoint (.ckpt/.pt/.pth or .safetensors)."),
    output: Path = typer.Option(..., "-o", "--output", help="Our .safetensors file to write."),
    preset: Optional[str] = typer.Option(None, help="cdt-base or cdt-small (detected from the shapes if omitted)."),
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

    name, state = convert_official(checkpoint, preset)
    model = CDT(get_config(name))
    model.load_state_dict(state, strict=True)
    with only_new(*[output] if new_only else []):  # one written meanwhile by another run is kept
        save_model(model, output, name, half=half, extra={"source": checkpoint.name})
    err.print(f"converted {checkpoint} ({name}, {len(state)} tensors) -> {output}", markup=False)


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
    freeze_encoder: bool = typer.Option(_TRAIN.freeze_encoder, help="Keep the encoder (and so the latents, the prior's "
                                        "rates and the quality scale) fixed; with --quantized-share the decoder "
                                        "alone learns the quantized latents."),
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
    new_only = export is not None and confirm_output(export, policy(yes, no), [model, out / "checkpoint.pt"])
    from bitstream.atomic import only_new
    from cdtcodec.timeline import CODEC_TIMELINE
    from cdtcodec.train.run import run_training

    if CODEC_TIMELINE.coded_frames(frames) != frames:
        raise ValueError(f"--frames must be 1 + {CODEC_TIMELINE.temporal}k (e.g. 9, 17)")
    if crop % 16:
        raise ValueError("--crop must be a multiple of 16")
    cfg = TrainConfig(model=model, data=str(data), out=str(out), steps=steps, batch=batch, frames=frames, crop=crop,
                      lr=lr, warmup=warmup, final_lr_ratio=final_lr_ratio, kl_weight=kl_weight,
                      lpips_weight=lpips_weight, rate_weight=rate_weight, quantized_share=quantized_share,
                      freeze_encoder=freeze_encoder, inference_share=inference_share,
                      ema=ema, seed=seed, val_every=val_every, ckpt_every=ckpt_every, workers=workers,
                      device=device, threads=threads, precision=precision)
    try:
        with only_new(*[export] if new_only else []):  # an --export written meanwhile by another run is kept
            run_training(cfg, export=export, console=err)
    except (Interrupted, KeyboardInterrupt) as e:  # the loop wrote its checkpoint on the way out
        name, code = (e.name, e.exit_code) if isinstance(e, Interrupted) else ("SIGINT", 130)
        _fail(f"interrupted by {name}; the run so far is in {out / 'checkpoint.pt'} (the same command resumes it)",
              code)


@app.command()
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

    _set_threads(threads)
    run_demo(ASSETS / "sample.mp4", output, model=model, quality=quality, precision=_precision(precision, "cpu"),
             console=err)


@app.command()
@friendly_errors
def bench(
    clips: Optional[list[str]] = typer.Argument(None, help="Video files (default with --quick: the bundled sample)."),
    codecs: Optional[str] = typer.Option(None, help="Comma-separated: cdt, cdt-range (the same model, version-1 range coder), cdt-fp32 and cdt-bf16 (the same model at that precision), x264, x265, svtav1 (default: all but cdt-fp32 and cdt-bf16)."),
    qualities: Optional[str] = typer.Option(None, help="cdt qualities, comma-separated (default: all)."),
    presets: Optional[str] = typer.Option(None, help="Reference encoder presets: medium, slow (default: both)."),
    crf: Optional[list[str]] = typer.Option(None, "--crf", help="CRF grid of a reference: CODEC=CRF,CRF,... (repeatable)."),
    size: Optional[int] = typer.Option(None, help="Clips are resized and centre-cropped to SIZE x SIZE (default 256)."),
    frames: Optional[int] = typer.Option(None, help="The first N frames of each clip (default 33)."),
    out: Path = typer.Option(Path("results"), "--out", "-o", help="Output folder."),
    model: str = typer.Option(DEFAULT_MODEL, help="Preset with shipped weights, or a weights file."),
    quick: bool = typer.Option(False, "--quick", help="CI smoke run: one tiny clip (32x32, 5 frames), cdt at two qualities against x264."),
    no_streams: bool = typer.Option(False, "--no-streams", help="Do not keep the encoded streams in OUT/streams."),
    report_frame: Optional[int] = typer.Option(None, "--report-frame", help="The frame report.html shows of each clip (default: the middle one)."),
    threads: int = THREADS,
    device: str = DEVICE,
    precision: str = typer.Option("auto", help="auto, fp32 or bf16: the arithmetic of the cdt curves (the codecs "
                                               "cdt-fp32 and cdt-bf16 always run at theirs)."),
    yes: bool = typer.Option(False, "-y", "--overwrite", help="Replace the results of an earlier run in OUT."),
    no: bool = typer.Option(False, "-n", "--no-overwrite", help="Refuse when OUT holds an earlier run's results."),
):
    """Rate-distortion benchmark against x264/x265/SVT-AV1: results.json, results.csv, plots, summary.md, report.html."""
    from bitstream.atomic import only_new
    from cdtcodec import bench as rd

    # an earlier run's results mark OUT as used; results.json, written first, is kept if another run wrote it
    new_only = confirm_output(out / "results.json", policy(yes, no), clips or [])
    cfg = rd.make_config(clips, codecs=codecs, qualities=qualities, presets=presets, crfs=crf, size=size,
                         frames=frames, out=out, model=model, device=_device(device),
                         precision=_precision(precision, _device(device)), threads=threads, quick=quick,
                         keep_streams=not no_streams, report_frame=report_frame)
    with only_new(*[out / "results.json"] if new_only else []):
        results = rd.run(cfg, console=err)
    for line in rd.console_lines(results, out):
        err.print(line, highlight=False, markup=False)
    if results.failed:
        _fail(f"{results.failed} run(s) failed; see {out / 'results.json'}")


@app.command()
@friendly_errors
def clean(
    folders: Optional[list[str]] = typer.Argument(None, metavar="[FOLDER]...", help="Where to look (default: the "
                                                  "current folder and the system's temporary folder)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list them; remove nothing."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Look in subfolders too."),
):
    """List cdtcodec's temporaries (.NAME.cdtcodec-PID-*.part, cdtcodec-PID-* folders) and remove those whose
    process is gone; a running process's are kept."""
    from cdtcodec.temporaries import command

    raise typer.Exit(command(folders, dry_run=dry_run, recursive=recursive))


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        typer.echo(f"cdtcodec {__version__}")
        raise typer.Exit()


def main() -> None:
    # First of all: from here on a fatal signal is recorded, and raises inside a command (friendly_errors).
    # Outside one (argument parsing) it only records, since click would turn it into "Aborted!" and exit 1.
    with signals_caught(*FATAL_SIGNALS, raising=False) as received:
        from cdtcodec.allocator import keep_freed_memory

        os.environ.setdefault("PYTHONWARNINGS", "ignore")
        keep_freed_memory()  # the process's allocator, before the first large tensor (see cdtcodec/allocator.py)
        try:
            app()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if received and code != 128 + received[0]:  # a signal no command reported
            name = signal.Signals(received[0]).name
            err.print(f"error: interrupted by {name}; no output was written", markup=False, highlight=False)
            code = 128 + received[0]
    sys.exit(code)
