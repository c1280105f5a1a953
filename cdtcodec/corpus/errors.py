"""The corpus's own errors: a run that cannot go on, and an argument that would fix it (see cdtcodec/errors.py)."""

from __future__ import annotations

from cdtcodec.errors import ParamError


class CorpusError(Exception):
    """The corpus run cannot go on (its workers cannot start, Ray cannot be reached); the message is one line."""


class BadCorpusArgument(ParamError, CorpusError):
    """An argument of encode_corpus out of its range, or one that would fix the error; the message names it."""
