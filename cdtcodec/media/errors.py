"""The one error type of the media layer, and how PyAV/OS failures become its one-line messages."""

from __future__ import annotations

import av


class VideoError(Exception):
    """A video could not be read or written; the message is one line and names the file."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))



def _describe(exc: BaseException) -> str:
    """One short line describing a PyAV/OS exception, without the path it may repeat."""
    if isinstance(exc, av.FFmpegError):
        text = exc.strerror or ""
        log = getattr(exc, "log", None)
        if log and len(log) >= 3 and log[2]:
            text = f"{text} ({str(log[2]).strip()})" if text else str(log[2]).strip()
        return text or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _err(path, what: str, exc: BaseException | None = None) -> VideoError:
    msg = f"{path}: {what}"
    if exc is not None:
        msg += f": {_describe(exc)}"
    return VideoError(msg)

