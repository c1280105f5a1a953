"""Which videos a corpus holds, and what each one's output is called.

The inputs are files (taken whatever their name: a still image is a one-frame video, as for one encode),
folders (walked recursively for video files, VIDEO_EXTENSIONS, hidden names and the output folder skipped)
and manifests, `@list.txt`: one path per line, relative to the manifest's folder, blank lines and lines
starting with `#` skipped; a line `@other.txt` names another manifest (relative to this one's folder too).
The same file reached twice counts once, a manifest listed twice is read once, and manifests that list each
other in a cycle are refused, naming the chain.

Outputs mirror the folders below the inputs' common folder (a folder input's own folder, a file's parent),
so a/x.mp4 and b/x.mp4 become DIR/a/x.cdt and DIR/b/x.cdt. Two videos of one folder that differ only in
their extension (x.mp4, x.mkv) keep it in their output names (x.mp4.cdt, x.mkv.cdt). A latent shard's sample
key is the output name with every character but letters, digits, '_', '-' and '/' made '_' (WebDataset
splits a member's name at its first dot: the key may hold none).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePosixPath


class InputError(Exception):
    """The corpus cannot be listed (a manifest that cannot be read, nothing to encode); one line."""


@dataclass(frozen=True)
class Clip:
    """One input of a corpus."""

    index: int  # position in the corpus: sorted by `relative`
    source: str  # absolute path, what workers open (a Ray actor's working folder is not the caller's)
    shown: str  # the path as the user spelt it, for messages
    relative: str  # posix path below the common folder, e.g. "a/x.mp4"
    name: str  # the output's name below DIR without its extension, e.g. "a/x"
    key: str  # the sample key in latent shards, e.g. "a/x"


def _manifest(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise InputError(f"@{path}: no such manifest file") from None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        raise InputError(f"@{path}: cannot read the manifest: {reason}") from None
    base = os.path.dirname(path)
    entries = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            manifest = line.startswith("@")
            line = line[1:] if manifest else line
            entries.append(("@" if manifest else "") + (line if os.path.isabs(line) else os.path.join(base, line)))
    return entries


def _walk(folder: str, exclude: str | None) -> list[str]:
    from cdtcodec.media import is_video_path  # here: importing the command line must not load PyAV

    found = []
    for parent, dirs, files in os.walk(folder):  # symlinked folders are not followed: no loops
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (exclude is None or os.path.abspath(os.path.join(parent, d)) != exclude))
        found += [os.path.join(parent, f) for f in sorted(files) if not f.startswith(".") and is_video_path(f)]
    return found


_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-/]")


def _keys(names: list[str]) -> list[str]:
    keys, seen = [], set()
    for name in names:
        key = _KEY_UNSAFE.sub("_", name)
        base, n = key, 1
        while key in seen:  # 'a.b' and 'a_b' would both be 'a_b'
            n += 1
            key = f"{base}_{n}"
        seen.add(key)
        keys.append(key)
    return keys


def discover(inputs: list[str], exclude: str | os.PathLike | None = None) -> list[Clip]:
    """The corpus the inputs name (see the module docstring), in a stable order. `exclude`: a folder the
    walk never enters (the output folder, when it lies inside an input folder)."""
    exclude = os.path.abspath(exclude) if exclude is not None else None
    files: list[tuple[str, str]] = []  # (as spelt, the folder it counts below)
    anchors: list[str] = []
    read: set[str] = set()  # the manifests read so far, by real path

    def add(entries: list[str], chain: dict[str, str]) -> None:
        """`chain`: the manifests being read, real path -> as spelt, outermost first."""
        for entry in entries:
            if entry.startswith("@"):
                real = os.path.realpath(entry[1:])
                if real in chain:
                    names = list(chain.values())
                    loop = names[list(chain).index(real):] + [entry]
                    raise InputError("manifests list each other in a cycle: " + " -> ".join(loop))
                if real not in read:  # one listed twice gives its files once
                    read.add(real)
                    add(_manifest(entry[1:]), {**chain, real: entry})
            elif os.path.isdir(entry):
                anchors.append(os.path.abspath(entry))
                files.extend((f, os.path.abspath(entry)) for f in _walk(entry, exclude))
            else:  # a file, or a path that does not exist: its encode reports it, the others go on
                anchors.append(os.path.dirname(os.path.abspath(entry)))
                files.append((entry, anchors[-1]))

    add(list(inputs), {})
    if not files:
        raise InputError("no video files in " + ", ".join(inputs) + " (folders are searched for "
                         "files with a video extension: .mp4, .mkv, .mov, .webm, ...)")
    root = os.path.commonpath(anchors)
    unique: dict[str, tuple[str, str]] = {}
    for shown, _ in files:
        real = os.path.realpath(shown)
        if real not in unique:
            unique[real] = (shown, os.path.abspath(shown))
    entries = sorted(((PurePosixPath(*os.path.relpath(absolute, root).split(os.sep)).as_posix(), shown, absolute)
                      for shown, absolute in unique.values()))
    stems = [str(PurePosixPath(rel).with_suffix("")) if PurePosixPath(rel).suffix else rel for rel, _, _ in entries]
    clashing = {s for s, n in Counter(stems).items() if n > 1}
    names = [rel if stem in clashing else stem for stem, (rel, _, _) in zip(stems, entries)]
    return [Clip(i, absolute, shown, rel, name, key)
            for i, ((rel, shown, absolute), name, key) in enumerate(zip(entries, names, _keys(names)))]
