"""Atomic output: write beside the final name, move into place only when complete.

The one home of temp-file-then-rename for the whole project: the .cdt writer, the video sinks, weights,
checkpoints and the benchmark's reports all write through AtomicOutput. It lives at the bottom layer
(bitstream imports nothing of cdtcodec) so that every writer can use it.

Temporaries are named `.NAME.cdtcodec-PID-RANDOM.part[SUFFIX]` beside the output (NAME shortened, with a hash,
when the whole would pass the file system's 255-byte limit) and `cdtcodec-PID-RANDOM` folders in the system's
temporary folder: the process id says whether the process that made one is still alive, so a later run can
remove what a SIGKILL (which nothing can catch) left behind (remove_stale; cdtcodec/temporaries.py lists and
cleans them on request). An output that exists and is not a regular file or a folder (a character device
such as /dev/null, a FIFO) is written into as it is, never replaced; a socket cannot be written into at all.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import signal
import stat
import tempfile
import threading
from contextlib import contextmanager
from contextvars import ContextVar
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


def special_file(path: str | os.PathLike) -> str:
    """What `path` names when it exists and is neither a regular file nor a folder ("character device", "FIFO",
    "socket", "block device"); "" otherwise. Such a file is written into as it is (see AtomicOutput)."""
    try:
        mode = os.stat(path).st_mode  # follows symlinks: /dev/stdout is what it points at
    except (OSError, ValueError):
        return ""
    for test, name in ((stat.S_ISCHR, "character device"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return ""


def not_a_socket(path: str | os.PathLike) -> None:
    """An OSError naming `path` when it is a socket: nothing can be written into one as into a file (opening
    it fails with a misleading "No such device or address"), and replacing it would cut off its server."""
    if special_file(path) == "socket":
        raise OSError(errno.ENXIO, "is a socket, which cannot be written into as a file (write to - and pipe "
                      "it there)", os.fspath(path))


TAG = "cdtcodec"  # in every temporary's name, with the id of the process that made it
_MAX_STEM = 180  # bytes of the output's name kept in its temporary's: the rest of the name stays under 255
_PART = re.compile(r"\." + TAG + r"-(\d+)-[0-9a-f]{8}\.part")
#: a whole temporary's name beside an output: `.NAME.cdtcodec-PID-RANDOM.part`, then the writer's suffix
#: (`.png`, `.mkv`) and `.old` (a folder output's predecessor, being replaced)
_PART_NAME = re.compile(r"\..+\." + TAG + r"-(\d+)-[0-9a-f]{8}\.part(?:\.[^./]{1,16}){0,2}\Z", re.DOTALL)
#: a whole temporary_folder()'s name: tempfile adds 8 characters of [a-z0-9_]
_FOLDER_NAME = re.compile(TAG + r"-(\d+)-[a-z0-9_]{8}\Z")


def _stem(name: str) -> str:
    """The output's name as its temporaries carry it: whole when short, else cut and told apart by a hash."""
    raw = os.fsencode(name)
    if len(raw) <= _MAX_STEM:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:8]
    return os.fsdecode(raw[:_MAX_STEM - 10]) + "~" + digest


def _temporary_name(name: str) -> str:
    return f".{_stem(name)}.{TAG}-{os.getpid()}-{secrets.token_hex(4)}.part"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _temporaries(final: str | os.PathLike) -> list[tuple[str, int | None]]:
    """(path, pid or None for the older unnamed kind) of every temporary of `final` beside it."""
    final = os.path.abspath(os.fspath(final).rstrip("/" + os.sep) or ".")
    parent, name = os.path.split(final)
    prefix, old = f".{_stem(name)}", f".{name}."
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    found = []
    for n in names:
        if n.startswith(prefix) and (m := _PART.match(n, len(prefix))):
            found.append((os.path.join(parent, n), int(m.group(1))))
        elif n.startswith(old) and n[len(old) + 8 : len(old) + 13] == ".part" and all(
                c in "0123456789abcdef" for c in n[len(old) : len(old) + 8]):  # before process ids were named
            found.append((os.path.join(parent, n), None))
    return found


def leftover_temporaries(final: str | os.PathLike) -> list[str]:
    """The temporaries of `final` beside it, whoever made them (a corpus rerun owns its output folder)."""
    return [path for path, _ in _temporaries(final)]


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.remove(path)
        except OSError:
            pass


def remove_leftovers(final: str | os.PathLike) -> int:
    """Remove leftover_temporaries(final); returns how many there were."""
    found = leftover_temporaries(final)
    for path in found:
        _remove(path)
    return len(found)


def temporaries_in(folder: str | os.PathLike) -> list[tuple[str, int]]:
    """(path, pid) of every cdtcodec temporary directly in `folder`, whoever made it, sorted by name. Only
    names of cdtcodec's own pattern that carry a process id count; a temporary_folder() name only when it is a
    folder. An unreadable or missing folder holds none."""
    folder = os.fspath(folder)
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    found = []
    for n in names:
        if (m := _PART_NAME.match(n)) is not None:
            found.append((os.path.join(folder, n), int(m.group(1))))
        elif (m := _FOLDER_NAME.match(n)) is not None:
            path = os.path.join(folder, n)
            if os.path.isdir(path) and not os.path.islink(path):
                found.append((path, int(m.group(1))))
    return found


def alive(pid: int) -> bool:
    """Whether the process `pid` exists (this one included; one of another user's counts as alive)."""
    return _alive(pid)


def remove_stale(final: str | os.PathLike) -> int:
    """Remove the stale temporaries beside `final`, each cdtcodec temporary in its folder whose process is gone
    (killed outright: SIGKILL, power loss), whatever output it was for, and the temporary_folder()s of gone
    processes; those of a live process (another run at work) stay, and so does anything not named as cdtcodec
    names its temporaries. Returns how many were removed beside `final`."""
    final = os.path.abspath(os.fspath(final).rstrip("/" + os.sep) or ".")
    stale = [path for path, pid in temporaries_in(os.path.dirname(final)) if not _alive(pid)]
    for path in stale:
        _remove(path)
    remove_stale_folders()
    return len(stale)


@contextmanager
def temporary_folder() -> Iterator[str]:
    """A fresh `cdtcodec-PID-...` folder in the system's temporary folder, removed at the end; first, those of
    processes that are gone are removed."""
    remove_stale_folders()
    with tempfile.TemporaryDirectory(prefix=f"{TAG}-{os.getpid()}-") as folder:
        yield folder


def remove_stale_folders() -> int:
    """Remove the temporary_folder()s of processes that are gone; returns how many."""
    stale = [path for path, pid in temporaries_in(tempfile.gettempdir())
             if _FOLDER_NAME.match(os.path.basename(path)) and not _alive(pid)]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)


#: outputs this process may create but not replace: the command line's, when they did not exist as it checked
#: them and -y was not given. One that appears meanwhile (another run writing the same name) is kept.
_NEW_ONLY: ContextVar[frozenset] = ContextVar("new_only", default=frozenset())


@contextmanager
def only_new(*finals: str | os.PathLike) -> Iterator[None]:
    """Inside, an AtomicOutput whose final is one of `finals` refuses (FileExistsError, naming it) to replace
    anything found there when it commits, and drops its own output instead."""
    token = _NEW_ONLY.set(_NEW_ONLY.get() | {os.path.abspath(os.fspath(f).rstrip("/" + os.sep) or ".")
                                             for f in finals})
    try:
        yield
    finally:
        _NEW_ONLY.reset(token)


def _appeared(final: str) -> FileExistsError:
    return FileExistsError(errno.EEXIST, "appeared while this run was working (another run wrote it?); this run "
                           "lost and left it as it is (pass -y to replace it)", final)


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
        self.done = True  # nothing to undo until the temporary exists
        not_a_socket(self.final)
        #: the final is a device or a FIFO: written into as it is (replacing /dev/null would be a disaster)
        self.in_place = not directory and bool(special_file(self.final))
        if self.in_place:
            self.path = self.final
            return
        self.path = os.path.join(parent, _temporary_name(name) + suffix)
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
            new_only = self.final in _NEW_ONLY.get()
            if self.directory:
                if new_only and os.path.lexists(self.final) and not (os.path.isdir(self.final)
                                                                     and not os.listdir(self.final)):
                    raise _appeared(self.final)  # an empty folder holds nothing to lose
                self._replace_directory()
            else:
                _fsync(self.path)
                if new_only:
                    self._link_into_place()
                else:
                    os.replace(self.path, self.final)
            _fsync(os.path.dirname(self.final), directory=True)
            self.done = True
        except BaseException:
            self.discard()
            raise

    def _link_into_place(self) -> None:
        """Move the temporary to the final name unless something is there by now: a hard link cannot replace."""
        try:
            os.link(self.path, self.final)
        except FileExistsError:
            raise _appeared(self.final) from None
        except OSError:  # a file system without hard links: check, then rename (a narrow race remains)
            if os.path.lexists(self.final):
                raise _appeared(self.final) from None
            os.replace(self.path, self.final)
            return
        os.remove(self.path)

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
        if self.in_place or not os.path.lexists(self.path):
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
    not_a_socket(final)
    if special_file(final):  # such a writer would replace the device itself: write aside, then copy into it
        with temporary_folder() as folder:
            tmp = os.path.join(folder, "output")
            write(tmp)
            with open(tmp, "rb") as src, open(final, "wb") as dst:
                shutil.copyfileobj(src, dst)
        return
    with AtomicOutput(final) as tmp:
        mode = stat.S_IMODE(os.stat(tmp).st_mode)
        write(str(tmp))
        os.chmod(tmp, mode)
