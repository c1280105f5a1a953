"""Atomic output: write beside the final name, move into place only when complete.

The one home of temp-file-then-rename for the whole project: the .cdt writer, the video sinks, weights,
checkpoints and the benchmark's reports all write through AtomicOutput. It lives at the bottom layer
(bitstream imports nothing of cdtcodec) so that every writer can use it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

#: the signals that end a process (a user, a terminal, a supervisor); held back while a writer is being built
_ENDING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class _Held:
    """A stand-in signal handler that only remembers what arrived."""

    def __init__(self):
        self.received: list[int] = []

    def __call__(self, signum, frame):
        self.received.append(signum)


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Inside, the signals that end a process are remembered instead of handled; at the end of the block they are
    sent again, to whatever handlers were installed before (cdtcodec's, Python's KeyboardInterrupt, the default).

    For building a writer's resources: an exception raised half-way through a constructor leaves an object that
    is neither whole nor absent (a SpooledTemporaryFile interrupted in __init__ complains from __del__; a
    temporary created but not yet recorded is never removed). With the signal held back, construction finishes
    and the signal arrives where the caller's clean-up can undo it all. Blocking the signal in the OS would not
    do: it reaches any other thread (torch's, FFmpeg's) and Python runs its handler anyway. Nests; outside the
    main thread (where Python cannot set handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    current = {s: signal.getsignal(s) for s in _ENDING_SIGNALS}
    if any(isinstance(h, _Held) for h in current.values()) or any(h is None for h in current.values()):
        yield  # already held by an enclosing block, or a handler Python cannot put back (set outside Python)
        return
    held = _Held()
    for s in current:
        signal.signal(s, held)
    try:
        yield
    finally:
        for s, h in current.items():
            signal.signal(s, h)
        for s in dict.fromkeys(held.received):  # each once, in order of arrival
            signal.raise_signal(s)


def _fsync(path: str, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory and hasattr(os, "O_DIRECTORY") else 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


def leftover_temporaries(final: str | os.PathLike) -> list[str]:
    """The temporaries of `final` that a process killed outright (SIGKILL, power loss) left beside it: the
    names AtomicOutput gives them. A rerun that writes `final` again removes them first."""
    final = os.path.abspath(os.fspath(final).rstrip("/" + os.sep) or ".")
    parent, name = os.path.split(final)
    prefix = f".{name}."
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    return [os.path.join(parent, n) for n in names
            if n.startswith(prefix) and len(n) >= len(prefix) + 13 and n[len(prefix) + 8 : len(prefix) + 13] == ".part"
            and all(c in "0123456789abcdef" for c in n[len(prefix) : len(prefix) + 8])]


def remove_leftovers(final: str | os.PathLike) -> int:
    """Remove leftover_temporaries(final); returns how many there were."""
    found = leftover_temporaries(final)
    for path in found:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except OSError:
                pass
    return len(found)


class CloseOrAbort:
    """For a writer with close(), abort() and a `_done` flag: `with` closes it on success and aborts it on an
    exception; one dropped unfinished (say a signal between construction and `with`) aborts, so it leaves no
    temporary behind."""

    _done = True  # until the writer's own __init__ has got as far as owning something

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def __del__(self):
        try:
            if not self._done:
                self.abort()
        except Exception:
            pass


class AtomicOutput:
    """A temporary file (or directory) `path` beside `final`, created empty on construction.

    commit() syncs it and renames it over `final` (a directory replaces an existing one); discard() removes
    it and leaves `final` untouched. As a context manager: commit on success, discard on any exception
    (KeyboardInterrupt included). Both are idempotent.
    """

    def __init__(self, final: str | os.PathLike, *, suffix: str = "", directory: bool = False):
        self.final = os.path.abspath(os.fspath(final).rstrip("/" + os.sep) or ".")
        self.directory = directory
        parent, name = os.path.split(self.final)
        self.path = os.path.join(parent, f".{name}.{secrets.token_hex(4)}.part{suffix}")
        self.done = True  # nothing to undo until the temporary exists
        created = False
        try:
            with deferred_signals():  # created and recorded as one step (see deferred_signals)
                if directory:
                    os.mkdir(self.path)
                else:
                    os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                created, self.done = True, False
        except BaseException:
            if created:  # a signal held back while it was made: undo it
                self.discard()
            raise

    def commit(self) -> None:
        if self.done:
            return
        try:
            if self.directory:
                self._replace_directory()
            else:
                _fsync(self.path)
                os.replace(self.path, self.final)
            _fsync(os.path.dirname(self.final), directory=True)
            self.done = True
        except BaseException:
            self.discard()
            raise

    def _replace_directory(self) -> None:
        old = None
        try:
            if os.path.isdir(self.final):
                old = f"{self.path}.old"
                os.rename(self.final, old)
            os.rename(self.path, self.final)
        except OSError:
            if old is not None and not os.path.exists(self.final):
                try:
                    os.rename(old, self.final)
                    old = None
                except OSError:
                    pass
            raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        self.done = True
        if not os.path.lexists(self.path):
            return
        if os.path.isdir(self.path) and not os.path.islink(self.path):
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            try:
                os.remove(self.path)
            except OSError:
                pass

    def __enter__(self) -> Path:
        return Path(self.path)

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
        return False


def write_atomically(final: str | os.PathLike, write: Callable[[str], object]) -> None:
    """write(temporary path) through an AtomicOutput, keeping the permissions the temporary was made with (the
    umask's): a writer that replaces the file it is given with one of its own, as safetensors does, leaves it
    0600, and weights written for others would not be readable by them."""
    with AtomicOutput(final) as tmp:
        mode = stat.S_IMODE(os.stat(tmp).st_mode)
        write(str(tmp))
        os.chmod(tmp, mode)
