"""`cdtcodec clean`: list cdtcodec's temporaries and remove those whose process is gone.

What counts as one is decided by bitstream.atomic alone (its names carry the id of the process that made
them): `.NAME.cdtcodec-PID-RANDOM.part...` files and folders beside outputs, and `cdtcodec-PID-RANDOM`
folders in the system's temporary folder. One whose process is alive belongs to a run at work and is never
touched; anything named otherwise is not cdtcodec's and is never looked at twice. Every run already removes
the stale ones beside its own output and in the temporary folder; this finds them anywhere, on request.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable, Iterable

from bitstream.atomic import alive, temporaries_in


@dataclass(frozen=True)
class Temporary:
    path: str
    pid: int
    alive: bool  # its process still runs: a run at work owns it
    bytes: int  # its size (a folder's: all it holds)
    folder: bool


def default_folders() -> list[str]:
    """Where `cdtcodec clean` looks unless told: the current folder and the system's temporary folder."""
    return list(dict.fromkeys([os.getcwd(), tempfile.gettempdir()]))


def _size(path: str) -> int:
    if not os.path.isdir(path) or os.path.islink(path):
        try:
            return os.lstat(path).st_size
        except OSError:
            return 0
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def find(folders: Iterable[str | os.PathLike], *, recursive: bool = False) -> list[Temporary]:
    """The temporaries directly in each of `folders` (and in their subfolders with `recursive`; never inside a
    temporary, nor through a symlink), each once, in the order found. A folder that is not one is an error
    naming it (NotADirectoryError / FileNotFoundError)."""
    found: dict[str, Temporary] = {}
    for folder in folders:
        folder = os.fspath(folder)
        if not os.path.isdir(folder):
            if os.path.lexists(folder):
                raise NotADirectoryError(errno.ENOTDIR, "not a folder", folder)
            raise FileNotFoundError(errno.ENOENT, "no such folder", folder)
        walk = os.walk(folder) if recursive else [(folder, None, None)]
        for root, dirs, _ in walk:
            here = temporaries_in(root)
            for path, pid in here:
                key = os.path.realpath(path)
                if key not in found:
                    found[key] = Temporary(path, pid, alive(pid), _size(path),
                                           os.path.isdir(path) and not os.path.islink(path))
            if dirs is not None:  # os.walk follows no symlinks; a temporary is not searched inside
                inside = {os.path.basename(p) for p, _ in here}
                dirs[:] = [d for d in dirs if d not in inside]
    return list(found.values())


def remove(temporary: Temporary) -> str:
    """Remove one temporary of a process that is gone; '' when done, else why not. Its process is looked at
    again first: a live one's is never removed."""
    if alive(temporary.pid):
        return f"process {temporary.pid} is running"
    try:
        if temporary.folder:
            shutil.rmtree(temporary.path)
        else:
            os.remove(temporary.path)
    except FileNotFoundError:
        return ""  # gone meanwhile
    except OSError as e:
        return e.strerror or str(e)
    return ""


def _amount(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def clean(folders: Iterable[str | os.PathLike] | None, *, dry_run: bool = False, recursive: bool = False,
          say: Callable[[str], None] = print) -> int:
    """The command: one line per temporary found (removed, would be removed, kept: whose process, how big),
    then a total; returns the exit status (1 when one that should have gone could not be removed)."""
    folders = list(folders) if folders else default_folders()
    found = find(folders, recursive=recursive)
    removed = failed = kept = 0
    freed = 0
    for t in found:
        what = f"{t.path} ({'folder, ' if t.folder else ''}{_amount(t.bytes)})"
        if t.alive:
            kept += 1
            say(f"kept {what}: process {t.pid} is running")
            continue
        if dry_run:
            removed += 1
            freed += t.bytes
            say(f"would remove {what}: process {t.pid} is gone")
            continue
        why = remove(t)
        if why:
            failed += 1
            say(f"could not remove {what}: {why}")
        else:
            removed += 1
            freed += t.bytes
            say(f"removed {what}: process {t.pid} was gone")
    where = ", ".join(os.fspath(f) for f in folders)
    if not found:
        say(f"no cdtcodec temporaries in {where}")
    else:
        say(f"{len(found)} cdtcodec temporar{'y' if len(found) == 1 else 'ies'} in {where}: {removed} "
            f"{'to remove' if dry_run else 'removed'} ({_amount(freed)}), {kept} kept (their runs are at work)"
            + (f", {failed} could not be removed" if failed else ""))
    return 1 if failed else 0


def command(folders: list[str] | None, *, dry_run: bool, recursive: bool) -> int:
    """`cdtcodec clean` as the command line runs it: the lines on standard output (one error line, before
    anything is removed, when it is closed)."""
    from cdtcodec.endpoints import require_stdout

    require_stdout()
    return clean(folders, dry_run=dry_run, recursive=recursive, say=lambda line: print(line, flush=True))
