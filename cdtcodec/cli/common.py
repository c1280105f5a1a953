"""What the commands share: the app, the error console and error handling, progress, the common options.

Importing this module stays light (no torch, no PyAV): main() installs the signal handlers before anything
slow is loaded, so Ctrl-C in the first seconds is handled like any other.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from bitstream import BitstreamError
from cdtcodec.errors import ParamError
from cdtcodec.interrupts import FATAL_SIGNALS, Interrupted, interrupt_on, signals_caught
from cdtcodec.overwrite import OutputRefused

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="cdtcodec: a video codec built on CDT, the conditioned diffusion-based video tokenizer.")
# User text (file names, messages quoting them) is printed as it is: no emoji codes (`clip:fire:.mp4`, `3:-1`)
# and, unless escaped, no markup ([bold]); see fail for the one styled prefix.
err = Console(stderr=True, emoji=False, highlight=False)
ASSETS = Path(__file__).resolve().parent.parent / "assets"


def fail(message: str, code: int = 1) -> None:
    line = " ".join(str(message).split())  # one line, whatever was interpolated into it
    err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def os_error(e: OSError) -> str:
    """'PATH: reason' for an OSError, without Python's '[Errno N]' decoration."""
    reason = e.strerror or str(e) or type(e).__name__
    return f"{e.filename}: {reason}" if e.filename else reason


#: How the command line spells the library parameters that errors name (ParamError): the option that sets each.
OPTIONS = {"step": "--qstep", "steps": "--sampling-steps", "entropy": "--entropy", "seed": "--seed",
           "frames": "--frames", "max_frames": "--max-frames", "model": "--model PATH", "codecs": "--codecs",
           "qualities": "--qualities", "presets": "--presets", "crfs": "--crf", "size": "--size", "quick": "--quick",
           "max_memory": "--max-memory SIZE", "target_kbps": "--target-kbps", "target_bpp": "--target-bpp",
           "jobs": "--jobs", "shard_size": "--shard-size", "latents": "--latent-dtype", "summary": "--summary",
           "ray": "--ray", "report_frame": "--report-frame"}
#: Where a command sets a library parameter with another option than OPTIONS names (the bench's `frames` is a
#: count, which --max-frames sets; --frames is a decode's range A:B).
COMMAND_OPTIONS = {"bench": {"frames": "--max-frames"}}


def option_names(command: str) -> dict[str, str]:
    """Library parameter -> the option of `command` that sets it."""
    return {**OPTIONS, **COMMAND_OPTIONS.get(command, {})}


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
    number and a closed stdout pipe with 141; the writers have removed any partial output by then. A library
    error about a parameter names the option of this command (`fn`'s name) that sets it."""
    names = option_names(fn.__name__)

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
            fail(f"interrupted by {e.name}; no output was written", e.exit_code)
        except KeyboardInterrupt:
            fail("interrupted; no output was written", 130)
        except BrokenPipeError:
            _silence_stdout()
            fail("standard output was closed before everything was written (broken pipe)", SIGPIPE_EXIT)
        except ParamError as e:  # the library names its parameter; the user set it with an option
            fail(e.worded(names.get(e.param, e.param)))
        except _user_errors() as e:
            fail(str(e))
        except OSError as e:
            fail(os_error(e))
        except ValueError as e:
            fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
        except MemoryError:
            fail("out of memory")
        except Exception as e:
            if os.environ.get("CDTCODEC_DEBUG"):
                raise
            text = str(e).splitlines()[0] if str(e) else ""
            fail(f"unexpected {type(e).__name__}{': ' + text if text else ''} (CDTCODEC_DEBUG=1 shows the traceback)")

    return wrapper


class FramesPerSecond(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:.2f} frames/s" if task.speed else "-- frames/s", style="cyan")


@contextmanager
def progress_bar(enabled: bool, label: str):
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


def warn(line: str) -> None:
    err.print(f"warning: {' '.join(line.split())}", markup=False, soft_wrap=True)


def note(line: str) -> None:
    err.print(f"note: {' '.join(line.split())}", markup=False, highlight=False, soft_wrap=True)


def memory(size: str | None) -> int | None:
    from cdtcodec.limits import parse_size

    return None if size is None else parse_size(size)


def set_threads(threads: int) -> None:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def device_named(name: str, here: bool = True) -> str:
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


def precision_for(choice: str, device: str | None) -> str:
    """--precision checked and resolved for `device` (auto: bf16 where that device does it fast); `device` None
    (corpus workers, which resolve it on their own devices) keeps auto."""
    from cdtcodec.precision import CHOICES, resolve

    if choice not in CHOICES:
        raise ValueError(f"--precision {choice}: unknown precision (use {', '.join(CHOICES)})")
    return choice if device is None else resolve(choice, device)


def input_path(path: str, suffix: str):
    """A path the command may open as often as it likes: `path`, or a copy of standard input ('-') or of what
    cannot be read twice (a FIFO, `<(...)`); see cdtcodec/endpoints.py."""
    from cdtcodec.endpoints import input_path as endpoint

    return endpoint(path, suffix, say=note)


def output_path(path: str, suffix: str, new_only: bool = False, staged: bool = True):
    """A path the writer makes `path` at; '-' (and a device or FIFO when `staged`) through a temporary copied
    there once complete, so a failed run writes nothing there; see cdtcodec/endpoints.py."""
    from cdtcodec.endpoints import output_path as endpoint

    return endpoint(path, suffix, staged=staged, new_only=new_only, say=note)


def summary(kind: str, report, out: str, as_json: bool, quiet: bool) -> None:
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
