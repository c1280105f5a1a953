"""May a command write its output? Never onto one of its inputs; onto an existing output only when asked.

The policy is ffmpeg's: `-y` replaces an existing output, `-n` refuses at once, and with neither the user is
asked on a terminal and refused otherwise (a CI job or a pipe has no one to answer). Sameness is decided by
device and inode, never by name, so a symlink, a hard link or another spelling of an input is caught too.
A character device or a FIFO is written into, never replaced, so it needs no -y (`-o /dev/null`); a block
device does (writing into a disk destroys what it holds); a socket cannot be written into as a file.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from typing import Callable, Iterable

from bitstream.atomic import remove_stale, special_file


class Overwrite(str, Enum):
    ASK = "ask"  # neither -y nor -n: ask on a terminal, refuse elsewhere
    ALWAYS = "always"  # -y
    NEVER = "never"  # -n


class OutputRefused(Exception):
    """The output may not be written; the message is one line and names the file."""


def policy(yes: bool, no: bool) -> Overwrite:
    if yes and no:
        raise OutputRefused("-y (overwrite) and -n (never overwrite) contradict each other")
    return Overwrite.ALWAYS if yes else Overwrite.NEVER if no else Overwrite.ASK


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks: a link to the input is the input
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _is_path(p) -> bool:
    return isinstance(p, (str, os.PathLike)) and os.fspath(p) not in ("-", "")


def refuse_inputs(output, inputs: Iterable, *, folder: bool = False) -> None:
    """OutputRefused when `output` is one of `inputs` (same device and inode), or, for a `folder` output
    (PNG frames: replaced as a whole), a folder holding one. Streams ('-') and file objects are skipped."""
    if not _is_path(output):
        return
    out = os.fspath(output).rstrip("/" + os.sep) or os.sep
    target = _identity(out)
    if target is None:
        return
    folder = os.path.realpath(out) if folder and os.path.isdir(out) else None
    for source in inputs:
        if not _is_path(source):
            continue
        if _identity(os.fspath(source)) == target:
            raise OutputRefused(f"{output}: is the input {os.fspath(source)}; refusing to write onto it")
        if folder is not None:
            real = os.path.realpath(os.fspath(source))
            if os.path.commonpath([folder, real]) == folder:
                raise OutputRefused(f"{output}: holds the input {os.fspath(source)}; refusing to replace it")


def _occupied(path: str) -> bool:
    """An output there would replace something: a file, or a folder that is not empty."""
    if os.path.isdir(path):
        try:
            return bool(os.listdir(path))
        except OSError:
            return True
    return os.path.lexists(path)


def _terminal() -> bool:
    try:
        return sys.stdin.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _ask_on_terminal(question: str) -> bool:
    sys.stderr.write(question)
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def confirm_output(output, rule: Overwrite, inputs: Iterable = (), *, folder: bool = False,
                   interactive: bool | None = None, ask: Callable[[str], bool] = _ask_on_terminal) -> bool:
    """Raise OutputRefused unless `output` may be written under `rule` (see the module docstring); returns
    True when it is to be created but nothing may be replaced (nothing was there, and no -y): one that appears
    meanwhile is then kept (bitstream.atomic.only_new). The temporaries that killed runs left in its folder
    (for any output) and in /tmp go.

    Called before anything slow, so a refusal costs nothing. `folder`: the output may be a folder (decode's
    PNG frames); otherwise a folder there is left for the writer to refuse. `interactive` defaults to "stdin
    and stderr are terminals and no input is read from stdin".
    """
    inputs = list(inputs)
    refuse_inputs(output, inputs, folder=folder)
    if not _is_path(output):
        return False
    path = os.fspath(output).rstrip("/" + os.sep) or os.sep
    kind = special_file(path)
    if kind == "socket":
        raise OutputRefused(f"{output}: is a socket, which cannot be written into as a file (write to - and "
                            "pipe it there)")
    if kind in ("character device", "FIFO"):
        return False  # written into as it is: nothing is replaced
    if not folder and os.path.isdir(path):
        return False  # "is a directory" is the writer's message
    if not kind:
        remove_stale(path)
    if not _occupied(path):
        return rule is not Overwrite.ALWAYS
    if rule is Overwrite.ALWAYS:
        return False
    if rule is Overwrite.NEVER:
        raise OutputRefused(f"{output}: already exists; not overwritten (-n)")
    if interactive is None:
        interactive = _terminal() and not any(isinstance(p, str) and p == "-" for p in inputs)
    if not interactive:
        raise OutputRefused(f"{output}: already exists; pass -y to overwrite it")
    if not ask(f"File '{output}' already exists. Overwrite? [y/N] "):
        raise OutputRefused(f"{output}: already exists; not overwritten")
    return False


def may_replace(rule: Overwrite, question: str, *, interactive: bool | None = None,
                ask: Callable[[str], bool] = _ask_on_terminal) -> bool:
    """Whether outputs that exist may be replaced, for a command that asks once about many (a corpus):
    -y yes, -n no, else the answer on a terminal and no elsewhere."""
    if rule is Overwrite.ALWAYS:
        return True
    if rule is Overwrite.NEVER:
        return False
    if not (_terminal() if interactive is None else interactive):
        return False
    return ask(question)
