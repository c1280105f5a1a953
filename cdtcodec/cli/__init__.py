"""The `cdtcodec` command line: argument parsing, progress and summaries only; the work lives elsewhere.

One module per group of commands (encode and its corpus, decode and info, convert and train, demo and bench,
clean),
what they share in common.py, how options are declared and renamed in options.py. Importing the package stays
light (no torch, no PyAV): main() installs the signal handlers before anything slow is loaded, so Ctrl-C in
the first seconds is handled like any other.
"""

from __future__ import annotations

import os
import signal
import sys

import typer

from cdtcodec import __version__
from cdtcodec.cli.common import OPTIONS, app, err
from cdtcodec.interrupts import FATAL_SIGNALS, signals_caught

# The commands, registered on `app` in the order --help lists them.
from cdtcodec.cli import encode, decode, models, bench, clean  # noqa: F401  isort: skip

__all__ = ["OPTIONS", "app", "main"]


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
