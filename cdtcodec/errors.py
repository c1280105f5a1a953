"""Errors about a call's arguments, worded in library terms; the faces (the CLI) reword them in their own.

Library code names its parameters (`step`, `frames`, `model`), never command-line flags. An error that is
about one argument, or that one argument would fix, is a ParamError: it knows which parameter and where the
message names it, so the command line can say `--qstep` (or `--model PATH`) instead, with `worded`.
"""

from __future__ import annotations


class ParamError(Exception):
    """An error whose one-line message names one parameter of the call: `before` + param + `after`.

    Mixed in before a library's own error type (CodecError, WeightsError, BenchError), so whoever catches
    that type still does."""

    def __init__(self, param: str, after: str, before: str = ""):
        self.param, self.before, self.after = param, before, after
        super().__init__(before + param + after)

    def worded(self, name: str) -> str:
        """The same message with the parameter called `name` (e.g. the command-line option that sets it)."""
        return self.before + name + self.after
