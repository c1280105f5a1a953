"""Signals that end the process, turned into an exception so every `finally` runs (partial outputs and
temporaries removed, checkpoints written) and the command exits 128 + the signal number with one line.

One handler object per process holds what was received: the context managers nest (the command line's
main(), a command, its progress bar), and an inner one that finds it installed shares its record instead of
starting a new one. Only the first signal raises: a second Ctrl-C while the first one's clean-up runs is
remembered, never allowed to cut that clean-up short.

A signal that lands inside a finalizer (an object's __del__, a weakref callback, run by the garbage collector
at any point) raises there, and Python swallows that exception with an "Exception ignored" traceback: the
process would go on as if nothing had come. The outermost block therefore watches for exactly that
(sys.unraisablehook) and raises the signal again a moment later, from whatever code runs after the finalizer.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

#: the signals a user, a terminal or a supervisor (timeout, docker stop, systemd, CI) ends a process with
FATAL_SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
                      if s is not None)

#: how soon a signal swallowed by a finalizer is raised again (SIGALRM), in seconds
RERAISE_DELAY_S = 0.001


class Interrupted(KeyboardInterrupt):
    """A fatal signal arrived. A KeyboardInterrupt, so that code which lets Ctrl-C through lets this through."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process the signal ended


class _Handler:
    def __init__(self):
        self.received: list[int] = []
        self.raising = False

    def __call__(self, signum, frame):
        first = not self.received
        self.received.append(signum)
        if self.raising and first:
            raise Interrupted(signum)

    def unraisable(self, previous_hook):
        """A sys.unraisablehook: an Interrupted that a finalizer swallowed is raised again (by SIGALRM, once
        the finalizer has returned); anything else goes to the hook that was there before."""
        def hook(unraisable) -> None:
            if not isinstance(unraisable.exc_value, Interrupted):
                previous_hook(unraisable)
                return
            signum = unraisable.exc_value.signum

            def reraise(*_):
                signal.signal(signal.SIGALRM, alarm_before)
                if self.raising:
                    raise Interrupted(signum)

            alarm_before = signal.signal(signal.SIGALRM, reraise)
            signal.setitimer(signal.ITIMER_REAL, RERAISE_DELAY_S)
        return hook


@contextmanager
def signals_caught(*signums: int, raising: bool = True) -> Iterator[list[int]]:
    """While inside, the signals (default FATAL_SIGNALS) are recorded in the yielded list and, when
    `raising`, the first one raises Interrupted; one already recorded by an enclosing block raises at once.

    Not raising (`raising=False`) suits code that cannot take an exception at any point (argument parsing
    in a framework that turns KeyboardInterrupt into its own exit): the caller looks at the list instead.
    Remembering also matters where a library swallows the exception (PyAV does while FFmpeg is busy): the
    caller can raise it again later. Signal handlers can only be set from the main thread; elsewhere this
    records nothing.
    """
    signums = signums or FATAL_SIGNALS
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    current = signal.getsignal(signums[0])
    outermost = not isinstance(current, _Handler)
    handler = _Handler() if outermost else current
    previous = {s: signal.signal(s, handler) for s in signums}
    hook_before = sys.unraisablehook
    if outermost:
        sys.unraisablehook = handler.unraisable(hook_before)
    was_raising, handler.raising = handler.raising, raising
    try:
        if raising and handler.received:
            raise Interrupted(handler.received[0])
        yield handler.received
    finally:
        handler.raising = was_raising
        if outermost:
            sys.unraisablehook = hook_before
        for s, p in previous.items():
            signal.signal(s, p)


def interrupt_on(*signums: int) -> Iterator[list[int]]:
    """signals_caught(*signums), raising: the name the training loop and the progress bar use."""
    return signals_caught(*signums, raising=True)
