"""Where a command's bytes come from and where they go: paths, standard input and output, FIFOs and devices.

Inputs: containers need seeking and a file is opened more than once (a probe, then each pass), so an input
that cannot be read twice (standard input, a FIFO, a pipe such as bash's `<(...)` (/dev/fd/N), a socket, a
.cdt from a character device) is read once into a temporary folder and the command reads the copy: memory
stays bounded, the disk holds the copy. A .cdt's first bytes are checked before the rest is copied, so
`/dev/zero` is refused at once. A video from a character device is left to FFmpeg, which refuses what it
cannot probe (/dev/zero) rather than be copied for ever.

Outputs: standard output, and a .cdt into a device or a FIFO (its header is rewritten at the end, which needs
seeking), are made in a temporary folder and copied out once complete, so a failed run writes nothing there.
A video into a device or a FIFO is written into it as it is, as it is made (bitstream.atomic: never replaced).

A FIFO blocks until its other end is opened, and an input that is read once may be slow to send its first
bytes (standard input from a terminal): after a moment a note says what the command waits for.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, Iterator

from bitstream import spec
from bitstream.atomic import only_new, remove_stale_folders, special_file, temporary_folder
from bitstream.errors import BadMagic, Truncated

#: how long a FIFO may block before a note says so, in seconds
WAIT_NOTE_S = 0.5


def _quiet(line: str) -> None:
    pass


@contextmanager
def _renamed(temporary: str, name: str) -> Iterator[None]:
    """Error messages that name a temporary stand-in name what it stands for instead."""
    try:
        yield
    except Exception as e:
        if e.args and isinstance(e.args[0], str) and temporary in e.args[0]:
            e.args = (e.args[0].replace(temporary, name), *e.args[1:])
        if isinstance(e, OSError) and e.filename == temporary:
            e.filename = name
        raise


@contextmanager
def _named_when_full(name: str) -> Iterator[None]:
    """A write that fails for lack of space names the output it was for (the OS names no file)."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            e.filename = name
        raise


def open_fifo(path: str, mode: str, say: Callable[[str], None] = _quiet):
    """open(path, mode) for a FIFO, which blocks until the other end is opened: when that takes a moment, `say`
    is told what the command waits for (a signal still ends the wait)."""
    other = "reader" if "w" in mode else "writer"
    timer = threading.Timer(WAIT_NOTE_S, say, [f"{path}: waiting for a {other} to open this FIFO"])
    timer.daemon = True
    timer.start()
    try:
        return open(path, mode)
    finally:
        timer.cancel()


def _needs_copy(path: str) -> bool:
    """Whether an input cannot be read twice as it is (a FIFO, a pipe, a socket)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False  # missing or unreadable: the reader says so
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _stream(what: str):
    """The binary buffer of standard input or output, or an error saying it is closed (`<&-`, `>&-`)."""
    stream = sys.stdin if what == "input" else sys.stdout
    try:
        buffer = stream.buffer  # None when the descriptor was closed as the interpreter started
        fd = buffer.fileno()
    except (OSError, ValueError):
        return buffer  # a stream with no descriptor (a test harness's, in memory): open
    except AttributeError:
        fd = -1
    try:
        os.fstat(fd)
    except OSError:
        raise OSError(errno.EBADF, f"standard {what} is closed: nothing to "
                      f"{'read from' if what == 'input' else 'write to'}") from None
    return buffer


def require_stdout() -> None:
    """An error, before any work, when standard output is closed (`>&-`) and the command's output goes there."""
    _stream("output")


@contextmanager
def _noted_if_slow(say: Callable[[str], None], line: str) -> Iterator[None]:
    """`say(line)` if the block takes longer than WAIT_NOTE_S (a read that blocks: nothing waits unsaid)."""
    timer = threading.Timer(WAIT_NOTE_S, say, [line])
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _first_bytes(source, size: int, label: str, say: Callable[[str], None], exact: bool) -> bytes:
    """The first read of an input that may block (standard input from a terminal, a pipe that is slow to
    start): after a moment a note says what the command waits for. `exact`: `size` bytes unless the input
    ends first; else what has arrived, up to `size`."""
    with _noted_if_slow(say, f"{label}: waiting for data to read (none has arrived yet)"):
        return source.read(size) if exact else getattr(source, "read1", source.read)(size)


def _check_cdt_start(head: bytes, label: str) -> None:
    """Refuse at once, by its first bytes, what is not a .cdt (/dev/zero is endless)."""
    if not head:
        raise Truncated(f"{label}: empty: nothing was read from it, not a .cdt file")
    if not spec.MAGIC.startswith(head[:len(spec.MAGIC)]):
        raise BadMagic(f"{label}: not a .cdt file (bad magic)")


@contextmanager
def input_path(path: str, suffix: str, say: Callable[[str], None] = _quiet) -> Iterator[str]:
    """A path the command can open as often as it likes for `path`: itself, or a copy of what cannot be read
    twice (see the module docstring). `suffix` is the copy's (".cdt" checks the start first). The temporary
    folders of runs killed outright go first, whether or not this one needs one."""
    remove_stale_folders()
    special = special_file(path) if path != "-" else ""
    if path != "-" and not (_needs_copy(path) or (special == "character device" and suffix == ".cdt")):
        yield path
        return
    label = "<stdin>" if path == "-" else path
    source = _stream("input") if path == "-" else None
    with temporary_folder() as tmp:
        target = str(Path(tmp) / f"input{suffix}")
        with _renamed(target, label):
            with (nullcontext(source) if source is not None else open_fifo(path, "rb", say)) as src, \
                    open(target, "wb") as f:
                cdt = suffix == ".cdt"
                head = _first_bytes(src, len(spec.MAGIC) if cdt else 1 << 16, label, say, exact=cdt)
                if cdt:
                    _check_cdt_start(head, label)
                f.write(head)
                shutil.copyfileobj(src, f, 1 << 20)
            yield target


@contextmanager
def output_path(path: str, suffix: str, *, staged: bool, new_only: bool = False,
                say: Callable[[str], None] = _quiet) -> Iterator[str]:
    """A path for the writer to make `path` at: itself, or a temporary copied out when complete (standard
    output; a device or FIFO when `staged`, for writers that seek). `new_only`: the output did not exist when
    the command checked it and -y was not given, so one that appears meanwhile is not replaced
    (bitstream.atomic.only_new). A FIFO is opened first, before any work, so its wait is said at once."""
    special = special_file(path) if path != "-" else ""
    if not special and path != "-":
        with only_new(path) if new_only else nullcontext(), _named_when_full(path):
            yield path
        return
    if special and not staged:
        from cdtcodec.media.formats import output_kind

        output_kind(path)  # a format the device or FIFO cannot take is refused now, before waiting for a reader
    name = "<stdout>" if path == "-" else path
    with (nullcontext(_stream("output")) if path == "-" else
          open_fifo(path, "wb", say) if special == "FIFO" else nullcontext()) as held, _named_when_full(name):
        if not staged and path != "-":
            yield path  # the writer writes into it as it is (its FIFO is held open meanwhile)
            return
        with temporary_folder() as tmp:
            target = str(Path(tmp) / f"output{suffix}")
            with _renamed(target, name):
                yield target
                with open(target, "rb") as f, (nullcontext(held) if held is not None else open(path, "wb")) as out:
                    shutil.copyfileobj(f, out, 1 << 20)
                    out.flush()
