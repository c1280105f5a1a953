"""What an encode loses or misses of its input, said once as a warning instead of silently.

The codec works on 8-bit RGB: an alpha channel is dropped and deeper samples (10, 12, 16 bits) are rounded
to 8. A container that declares more frames than decode (a truncated mp4 whose index is at the front) is
reported too, since the encode otherwise ends cleanly with the frames it found.
"""

from __future__ import annotations

import av

from cdtcodec.media.probe import VideoInfo


def input_reductions(info: VideoInfo) -> list[str]:
    """One line per reduction of the input's samples (none for plain 8-bit video)."""
    try:
        components = av.VideoFormat(info.pix_fmt).components if info.pix_fmt else ()
    except (ValueError, av.FFmpegError):
        return []
    notes = []
    if any(c.is_alpha for c in components):
        notes.append(f"{info.path}: its alpha channel ({info.pix_fmt}) is dropped; the codec keeps RGB only")
    bits = max((c.bits for c in components), default=8)
    if bits > 8:
        notes.append(f"{info.path}: {bits}-bit samples ({info.pix_fmt}) are reduced to 8 bits")
    return notes


def missing_frames(info: VideoInfo, decoded: int, start_s: float, max_frames: int | None) -> str | None:
    """A warning when fewer frames decoded than the container declares (only for a whole-file read, where the
    declared count applies)."""
    declared = info.num_frames
    if declared is None or start_s > 0 or info.is_image:
        return None
    wanted = declared if max_frames is None else min(declared, max_frames)
    if decoded >= wanted:
        return None
    return (f"{info.path}: the container declares {declared} frames but only {decoded} could be decoded "
            "(a truncated or damaged file?); encoded those")
