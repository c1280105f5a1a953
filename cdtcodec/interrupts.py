"""Signals turned into KeyboardInterrupt, so `finally` blocks run (partial outputs removed, checkpoints written)."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def interrupt_on(signum: int) -> Iterator[list[int]]:
    """While inside, `signum` raises KeyboardInterrupt and is also remembered in the yielded list.

    Remembering matters where a library can swallow the exception (PyAV does while FFmpeg is busy): the
    caller can raise it again later. Signal handlers can only be set from the main thread; elsewhere this
    changes nothing.
    """
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def handler(received, frame):
        seen.append(received)
        raise KeyboardInterrupt

    previous = signal.signal(signum, handler)
    try:
        yield seen
    finally:
        signal.signal(signum, previous)
